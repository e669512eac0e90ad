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
	`{"a" "b"}`, `[1,,2]`, `{"a":1 "b":2}`, "\"\\u00e9\"", "[\"\\uD83D\"]", `{"a":truex}`, `nulls`, `00`, `-01`,
}

// checkScanAsEncodingJSON fails t when validJSON, splitObject, compact,
// elements or objectItems answer data otherwise than encoding/json (splitObject and objectItems may
// decline: json.Unmarshal decides then).
func checkScanAsEncodingJSON(t *testing.T, data []byte) {
	if got, want := validJSON(data), json.Valid(data); got != want {
		t.Fatalf("validJSON(%q) = %v, json.Valid %v", data, got, want)
	}
	if !json.Valid(data) {
		return
	}
	checkSplitObject(t, data)
	var want bytes.Buffer
	if err := json.Compact(&want, data); err != nil || !bytes.Equal(compact(data), want.Bytes()) {
		t.Fatalf("compact(%q) = %q; json.Compact %q, %v", data, compact(data), want.Bytes(), err)
	}
	var wantArr []json.RawMessage
	arrErr := json.Unmarshal(data, &wantArr)
	gotArr, ok := elements(data)
	if ok != (arrErr == nil && wantArr != nil) || ok && len(gotArr)+len(wantArr) > 0 && !reflect.DeepEqual(gotArr, wantArr) {
		t.Fatalf("elements(%q) = %q, %v; encoding/json %q, %v", data, gotArr, ok, wantArr, arrErr)
	}
	var wantItems []map[string]json.RawMessage
	itemsErr := json.Unmarshal(data, &wantItems)
	if gotArr != nil || ok {
		var gotItems []*members
		ok := objectItems(data, &gotItems)
		if ok && (itemsErr != nil || len(gotItems) != len(wantItems)) {
			t.Fatalf("objectItems(%q) = %d items, %v; encoding/json %q, %v", data, len(gotItems), ok, wantItems, itemsErr)
		}
		for i := range gotItems {
			if ok && (gotItems[i] == nil) != (wantItems[i] == nil) || gotItems[i] != nil && !reflect.DeepEqual(*gotItems[i], contractMembers(wantItems[i])) {
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
	ok := splitObject(body, &fields)
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
