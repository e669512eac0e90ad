package query

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// qlRowsSeeds are "values" of InfluxQL answers, as influxd writes them and
// as it might: spaces, escapes, exponents, empty rows and null.
var qlRowsSeeds = []string{
	`[[1700000000000000000,12,-3,4.5,"src/a.go",true,null]]`,
	`[[1,2],[3,4],[5,6]]`,
	` [ [ 1 , "x" ] , [ false , null ] ] `,
	`[]`,
	`[[]]`,
	`null`,
	`[["a\"b","\\","\u00e9\ud83d\ude00","tab\there","\/"]]`,
	`[[1e3,-1.5E-7,0,-0,123456789012345678901234567890]]`,
	`[["unterminated \\"]]`,
	`[["src/ünï/codé.go", "日本"]]`,
	`[[[1]]]`,
	`[[{"a":1}]]`,
	`[1,2]`,
	`{"a":1}`,
}

// asEncodingJSON answers what encoding/json makes of the rows of b (with
// UseNumber), as qlValues, and whether it takes b as rows of scalars.
func asEncodingJSON(b []byte) (rows [][]qlValue, null, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out [][]any
	if dec.Decode(&out) != nil {
		return nil, false, false
	}
	if out == nil {
		return nil, true, true
	}
	rows = make([][]qlValue, len(out))
	for i, row := range out {
		rows[i] = make([]qlValue, len(row))
		for j, v := range row {
			switch v := v.(type) {
			case nil:
				rows[i][j] = qlValue{kind: kindNull}
			case json.Number:
				rows[i][j] = qlValue{text: string(v), kind: kindNumber}
			case string:
				rows[i][j] = qlValue{text: v, kind: kindString}
			case bool:
				rows[i][j] = qlValue{kind: kindFalse}
				if v {
					rows[i][j].kind = kindTrue
				}
			default:
				return nil, false, false // an array or an object
			}
		}
	}
	return rows, false, true
}

// checkQLRowsAsEncodingJSON: a series whose values are b decodes as
// encoding/json decodes b into rows of scalars, and fails where that does.
func checkQLRowsAsEncodingJSON(t *testing.T, b []byte) {
	if !json.Valid(b) {
		return // influxd answers JSON; encoding/json rejects the rest before qlRows sees it
	}
	want, null, ok := asEncodingJSON(b)
	var got qlSeries
	err := json.Unmarshal(append(append([]byte(`{"values":`), b...), '}'), &got)
	switch {
	case !ok && err == nil:
		t.Fatalf("%s: decoded as %v, but it is not rows of scalars", b, got.Values)
	case ok && err != nil:
		t.Fatalf("%s: %v", b, err)
	case !ok:
		return
	}
	if null != (got.Values == nil) {
		t.Fatalf("%s: null is %v, got %v", b, null, got.Values)
	}
	if len(want) == 0 && len(got.Values) == 0 {
		return
	}
	if !reflect.DeepEqual([][]qlValue(got.Values), want) {
		t.Fatalf("%s:\n got %v\nwant %v", b, got.Values, want)
	}
}

func TestQLRowsDecodeAsEncodingJSON(t *testing.T) {
	for _, s := range qlRowsSeeds {
		checkQLRowsAsEncodingJSON(t, []byte(s))
	}
	// A chunk as influxd writes it, large enough to cross the decoder's
	// buffer.
	var b strings.Builder
	b.WriteString("[")
	for i := range 3000 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`[1700000000000000000,12,7,5,0.25,false,"src/pkg1/file` + strings.Repeat("x", i%7) + `.go"]`)
	}
	b.WriteString("]")
	checkQLRowsAsEncodingJSON(t, []byte(b.String()))
}

func FuzzQLRows(f *testing.F) {
	for _, s := range qlRowsSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkQLRowsAsEncodingJSON)
}

// TestNumOfQLValues: num reads numbers, null as zero, and refuses the rest.
func TestNumOfQLValues(t *testing.T) {
	var n int64
	if err := num(qlValue{text: "42", kind: kindNumber}, &n); err != nil || n != 42 {
		t.Errorf("42: %d, %v", n, err)
	}
	if err := num(qlValue{text: "1e3", kind: kindNumber}, &n); err != nil || n != 1000 {
		t.Errorf("1e3: %d, %v", n, err)
	}
	if err := num(qlValue{kind: kindNull}, &n); err != nil || n != 0 {
		t.Errorf("null: %d, %v", n, err)
	}
	var f json.Number
	if err := num(qlValue{text: "0.5", kind: kindNumber}, &f); err != nil || f != "0.5" {
		t.Errorf("0.5: %s, %v", f, err)
	}
	for _, v := range []qlValue{{text: "42", kind: kindString}, {kind: kindTrue}, {text: "1.5", kind: kindNumber}} {
		if err := num(v, &n); err == nil {
			t.Errorf("%v read as the integer %d", v, n)
		}
	}
}
