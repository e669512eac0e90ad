package handlers

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// scanSeeds are JSON texts whose members and elements must come out as
// encoding/json decodes them: escapes in names and values, a name given
// twice, invalid UTF-8, nesting, space everywhere JSON allows it.
var scanSeeds = []string{
	`{}`, ` { } `, `[]`, ` [ ] `, `null`, `1`, `"x"`, `true`,
	`{"a":1,"b":"two","c":null,"d":[1,{"e":"]"}],"f":{"g":"}"},"h":-1.5e+3,"i":true,"j":false}`,
	" \t\n{ \"a\" :\r\n 1 , \"b\"\t:\t[ 1 , 2 ] ,\"c\": { \"d\" : \"e\" } } \n",
	`{"a":1,"a":2}`, `{"\u0061":"\"quoted\" \\ and \/"}`, `{"a\"b":"c\\"}`, "{\"\xff\":\"\xfe\"}",
	`{"nested":[[[[{"x":[]}]]]],"s":"[{,:}]"}`, `[{"a":1},null,{"b":[null]}, {} ]`, `[1,"2",[3],{"4":4}]`,
	`{"operations":[{"session_id":"s","parameters":{"k":"v"}},null]}`,
	`{"tool_name":"a","x":1,"tool_name":"b"}`, `{"tool_\u006eame":"read","tool_id":"t"}`, "{\"tool_id\xff\":1,\"tool_id\":2}",
	`{"operations":[{"tool_id":"a","tool_\u0069d":"b"},{"session_id":1,"session_id":null},{}]}`, `{"a":"\ud83d\ude00","b":"é"}`,
	// Valid or not as json.Valid says (validJSON must agree).
	`-0.0e+00`, `0e5`, `1E-2`, "\"\x7f\"", `{"a":01}`, `[1,]`, `{"a":1,}`, "\"\x01\"", `"\u12"`, `"\x"`, `1e`, `-`,
	`1.`, `.5`, `+1`, `tru`, `nul`, `[`, `{"a"}`, `{"a":}`, `{,}`, `"abc`, ` `, ``, `1 2`, `[1 2]`, `{"a":[1,{"b":nul}]}`,
	`{"a" "b"}`, `[1,,2]`, `{"a":1 "b":2}`, "{\"a\x01\":1}", `{"a":1}x`, `{"a":1} {}`, `{"a":1`, `{"a`, `[{"a":1},nul]`, `[{"a":[}]`, "\"\\u00e9\"", "[\"\\uD83D\"]", `{"a":truex}`, `nulls`, `00`, `-01`,
}

// validJSON reports whether data is one JSON value with white space around
// it, by validValue: the tests compare it with json.Valid.
func validJSON(data []byte) bool {
	i, ok := validValue(data, skipSpace(data, 0), 0)
	return ok && skipSpace(data, i) == len(data)
}

// checkScanAsEncodingJSON fails t when validJSON, splitBody, compact or
// objectItems answer data otherwise than encoding/json (splitBody and
// objectItems may decline: json.Unmarshal decides then).
func checkScanAsEncodingJSON(t *testing.T, data []byte) {
	if got, want := validJSON(data), json.Valid(data); got != want {
		t.Fatalf("validJSON(%q) = %v, json.Valid %v", data, got, want)
	}
	checkSplitBody(t, data)
	if !json.Valid(data) {
		return
	}
	var want bytes.Buffer
	if err := json.Compact(&want, data); err != nil || !bytes.Equal(compact(data), want.Bytes()) {
		t.Fatalf("compact(%q) = %q; json.Compact %q, %v", data, compact(data), want.Bytes(), err)
	}
	var wantItems []map[string]json.RawMessage
	itemsErr := json.Unmarshal(data, &wantItems)
	if v := bytes.TrimSpace(data); v[0] == '[' { // objectItems takes a field's value, which starts at its '['
		var gotItems []*members
		ok := objectItems(v, &gotItems)
		if ok && (itemsErr != nil || len(gotItems) != len(wantItems)) {
			t.Fatalf("objectItems(%q) = %d items, %v; encoding/json %q, %v", data, len(gotItems), ok, wantItems, itemsErr)
		}
		if !ok && itemsErr == nil && !bytes.Contains(v, []byte(`\`)) {
			t.Fatalf("objectItems(%q) declined items encoding/json decodes (%q), none with an escape", data, wantItems)
		}
		for i := range gotItems {
			if (gotItems[i] == nil) != (wantItems[i] == nil) || gotItems[i] != nil && !reflect.DeepEqual(*gotItems[i], contractMembers(wantItems[i])) {
				t.Fatalf("objectItems(%q) item %d = %q; encoding/json %q", data, i, gotItems[i], wantItems[i])
			}
		}
	}
}

func TestScanAsEncodingJSON(t *testing.T) {
	for _, s := range scanSeeds {
		checkScanAsEncodingJSON(t, []byte(s))
	}
	body := batchBody(50)
	checkScanAsEncodingJSON(t, body)
	// A body of the contract's plain keys is never declined.
	var fields members
	ok := splitBody(body, &fields)
	var items []*members
	if !ok || !objectItems(fields[fOperations], &items) || len(items) != 50 {
		t.Fatalf("a batch of 50 operations: split %v, %d items", ok, len(items))
	}
}

// TestValidJSONDepth: arrays and objects nest as deep as encoding/json
// allows, and no deeper.
func TestValidJSONDepth(t *testing.T) {
	for _, n := range []int{maxJSONDepth, maxJSONDepth + 1} {
		for _, open := range []string{"[", `{"a":`} {
			closing := "]"
			if open != "[" {
				closing = "}"
			}
			data := []byte(strings.Repeat(open, n) + "1" + strings.Repeat(closing, n))
			if got, want := validJSON(data), json.Valid(data); got != want || got != (n <= maxJSONDepth) {
				t.Errorf("%d levels of %s: validJSON %v, json.Valid %v", n, open, got, want)
			}
		}
	}
}

func FuzzScanAsEncodingJSON(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Add(batchBody(3))
	f.Fuzz(checkScanAsEncodingJSON)
}
