package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// object is a JSON object body whose fields are checked one by one, so that
// every bad field is reported at once, as FastAPI does.
type object struct {
	fields *members
	item   int // the index of a batch's item, whose errors are at ["body", "operations", item, ...]; bodyItem for a body
	errs   []api.FieldError
}

// bodyItem is the item of an object that is a request body itself.
const bodyItem = -1

// itemLoc answers the location of a batch item's error: ["body",
// "operations", i, then names...].
func itemLoc(i int, names ...any) []any {
	return append([]any{"body", "operations", i}, names...)
}

// field is a member name of the contract's request bodies
// (api.OperationRequest, api.BatchRequest, api.SessionRequest): the index
// of its value in members.
type field uint8

// members are the values of a JSON object's members that are contract
// fields, each its JSON as sent (the last of a repeated name wins), nil
// where absent. Other members are ignored, as the contract ignores unknown
// fields. An array instead of a map: a batch's items take one allocation,
// and a field is read without hashing its name.
type members [numFields]json.RawMessage

// numFields is how many names the contract's request bodies have; the
// package does not start when it is wrong.
const numFields = 19

// fieldNames are the contract's request body fields by index, and
// fieldByName the index of each name.
var fieldNames, fieldByName = contractFields()

func contractFields() ([]string, map[string]field) {
	var names []string
	byName := map[string]field{}
	for _, v := range []any{api.OperationRequest{}, api.BatchRequest{}, api.SessionRequest{}} {
		t := reflect.TypeOf(v)
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			if _, ok := byName[name]; !ok && name != "" && name != "-" {
				byName[name] = field(len(names))
				names = append(names, name)
			}
		}
	}
	if len(names) != numFields {
		panic(fmt.Sprintf("handlers: the contract's request bodies have %d fields, numFields is %d", len(names), numFields))
	}
	return names, byName
}

// fieldNamed answers the field of a contract name; any other name is a
// programming error.
func fieldNamed(name string) field {
	f, ok := fieldByName[name]
	if !ok {
		panic("handlers: " + name + " is not a field of the contract's request bodies")
	}
	return f
}

func (f field) String() string { return fieldNames[f] }

// The fields the handlers read.
var (
	fOperationID     = fieldNamed("operation_id")
	fSessionID       = fieldNamed("session_id")
	fToolName        = fieldNamed("tool_name")
	fOperationMode   = fieldNamed("operation_mode")
	fParameters      = fieldNamed("parameters")
	fFilePath        = fieldNamed("file_path")
	fTokensOriginal  = fieldNamed("tokens_original")
	fTokensActual    = fieldNamed("tokens_actual")
	fTokensPrevented = fieldNamed("tokens_prevented")
	fResponseTimeMs  = fieldNamed("response_time_ms")
	fToolID          = fieldNamed("tool_id")
	fCreatedAt       = fieldNamed("created_at")
	fCacheHit        = fieldNamed("cache_hit")
	fOperations      = fieldNamed("operations")
	fToolVersion     = fieldNamed("tool_version")
	fProcessID       = fieldNamed("process_id")
	fProjectID       = fieldNamed("project_id")
	fWorkspacePath   = fieldNamed("workspace_path")
	fInstanceID      = fieldNamed("instance_id")
)

// notAnObject answers the 422 of a body that is JSON but not an object.
func notAnObject() error {
	return fieldError(notAnObjectMsg, "model_attributes_type", "body")
}

const notAnObjectMsg = "Input should be a valid dictionary or object to extract fields from"

// decodeObject parses data as a JSON object. A body that is not JSON, or not
// an object, is a 422.
func decodeObject(data []byte) (*object, error) {
	o := &object{fields: new(members), item: bodyItem}
	if splitBody(data, o.fields) {
		return o, nil
	}
	*o.fields = members{}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) || bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
			return nil, notAnObject()
		}
		return nil, fieldError("JSON decode error: "+err.Error(), "json_invalid", "body", 0)
	}
	if fields == nil { // the body was the literal null
		return nil, notAnObject()
	}
	for name, v := range fields {
		if f, ok := fieldByName[name]; ok {
			o.fields[f] = v
		}
	}
	return o, nil
}

// splitBody sets m to the members of data when data is valid JSON (as
// json.Valid judges it: validValue) and an object, in one pass that
// validates and splits it (splitAt). It answers false, for json.Unmarshal
// to decide, when data is not valid JSON, not an object, or has a name
// with an escape.
func splitBody(data []byte, m *members) bool {
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return false
	}
	end, ok := splitAt(data, i, m, true)
	return ok && skipSpace(data, end) == len(data)
}

// splitAt sets m to the members of the object at data[i] ('{'), as
// json.Unmarshal into a map of json.RawMessage would (the last of a
// repeated name wins), without its reflection and copies: the values are
// data's own bytes. It answers the index just past the object. It answers
// false when a name has an escape (which may spell a contract name) and,
// with valid, when the object is not valid JSON (validObject's rules);
// without valid, the object must be valid JSON.
func splitAt(data []byte, i int, m *members, valid bool) (int, bool) {
	i, more, _ := validOpen(data, i, 1, '}')
	for more {
		if i == len(data) || data[i] != '"' {
			return i, false
		}
		j := i + 1
		for ; j < len(data) && data[j] != '"'; j++ {
			if data[j] == '\\' || data[j] < 0x20 { // an escape, or not valid
				return j, false
			}
		}
		if j == len(data) {
			return j, false
		}
		f, known := fieldByName[string(data[i+1:j])]
		if i = skipSpace(data, j+1); i == len(data) || data[i] != ':' {
			return i, false
		}
		start := skipSpace(data, i+1)
		end := 0
		if valid {
			var ok bool
			if end, ok = validValue(data, start, 1); !ok {
				return end, false
			}
		} else {
			end = skipValue(data, start)
		}
		if known {
			m[f] = data[start:end:end]
		}
		var ok bool
		if i, more, ok = validNext(data, end, '}'); !ok {
			return i, false
		}
	}
	return i, true
}

// skipSpace answers the index of the first byte of data at or after i that
// is not JSON whitespace.
func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipValue answers the index just past the JSON value starting at i in
// data, which is valid JSON.
func skipValue(data []byte, i int) int {
	depth := 0
	for ; i < len(data); i++ {
		switch data[i] {
		case '"':
			for i++; data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return i + 1
			}
			if depth < 0 { // the end of the enclosing object: a literal ended
				return i
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

func (o *object) fail(f field, msg, typ string) {
	loc := []any{"body", f.String()}
	if o.item != bodyItem {
		loc = itemLoc(o.item, f.String())
	}
	o.errs = append(o.errs, api.FieldError{Loc: loc, Msg: msg, Type: typ})
}

// err answers the collected field errors, nil when there are none.
func (o *object) err() error {
	if len(o.errs) == 0 {
		return nil
	}
	return &validationError{errs: o.errs}
}

// raw answers the field's JSON, nil when absent or null; required fields
// that are absent or null are reported.
func (o *object) raw(name field, required bool) json.RawMessage {
	v := o.fields[name]
	if v == nil || string(v) == "null" {
		if required {
			o.fail(name, "Field required", "missing")
		}
		return nil
	}
	return v
}

// str decodes an optional string field (see text); nil when absent or bad.
func (o *object) str(name field, maxLen int) *string {
	if s, ok := o.text(name, false, false, maxLen); ok {
		return &s
	}
	return nil
}

// text decodes a string field; maxLen (in characters) 0 means unbounded;
// nonEmpty rejects "". ok is false when it is absent, null or bad (and a
// bad or required field is reported).
func (o *object) text(name field, required, nonEmpty bool, maxLen int) (s string, ok bool) {
	v, ok := o.quoted(name, required)
	if !ok {
		return "", false
	}
	if inner := v[1 : len(v)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		s = string(inner) // no escapes: the text between the quotes is the string
	} else if err := json.Unmarshal(v, &s); err != nil {
		o.fail(name, "Input should be a valid string", "string_type")
		return "", false
	}
	if nonEmpty && s == "" {
		o.fail(name, "String should have at least 1 character", "string_too_short")
		return "", false
	}
	if maxLen > 0 && utf8.RuneCountInString(s) > maxLen {
		o.fail(name, fmt.Sprintf("String should have at most %d characters", maxLen), "string_too_long")
		return "", false
	}
	return s, true
}

// quoted answers the JSON of a string field, quotes included; ok is false
// when it is absent, null or not a string (reported, as a missing required
// field is).
func (o *object) quoted(name field, required bool) (v json.RawMessage, ok bool) {
	v = o.raw(name, required)
	if v == nil {
		return nil, false
	}
	if v[0] != '"' || len(v) < 2 {
		o.fail(name, "Input should be a valid string", "string_type")
		return nil, false
	}
	return v, true
}

// enum decodes a string field that must be one of allowed; the answer
// points into allowed.
func (o *object) enum(name field, required bool, allowed []string) *string {
	if v := o.fields[name]; len(v) > 2 && v[0] == '"' {
		for i, a := range allowed {
			if string(v[1:len(v)-1]) == a {
				return &allowed[i]
			}
		}
	}
	s, ok := o.text(name, required, false, 0)
	if !ok {
		return nil
	}
	for i, a := range allowed {
		if s == a {
			return &allowed[i]
		}
	}
	o.fail(name, "Input should be "+quoteList(allowed), "enum")
	return nil
}

// quoteList renders 'a', 'b' or 'c' as pydantic does.
func quoteList(allowed []string) string {
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = "'" + a + "'"
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// integer decodes a field that must be a JSON integer literal (5000, not
// "5000", 5000.0 or 5e3) within [min, MaxInt64]; ok is false when it is
// absent, null or bad.
func (o *object) integer(name field, required bool, min int64) (n int64, ok bool) {
	v := o.raw(name, required)
	if v == nil {
		return 0, false
	}
	if !isJSONNumber(v) {
		o.fail(name, "Input should be a valid integer", "int_type")
		return 0, false
	}
	if bytes.ContainsAny(v, ".eE") {
		o.fail(name, "Input should be a valid integer, got a number with a fractional part or exponent", "int_from_float")
		return 0, false
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		if v[0] == '-' {
			o.fail(name, fmt.Sprintf("Input should be greater than or equal to %d", min), "greater_than_equal")
		} else {
			o.fail(name, fmt.Sprintf("Input should be less than or equal to %d", int64(math.MaxInt64)), "less_than_equal")
		}
		return 0, false
	}
	if n < min {
		o.fail(name, fmt.Sprintf("Input should be greater than or equal to %d", min), "greater_than_equal")
		return 0, false
	}
	return n, true
}

// number decodes a field that must be a finite JSON number >= min; ok is
// false when it is absent, null or bad.
func (o *object) number(name field, required bool, min float64) (f float64, ok bool) {
	v := o.raw(name, required)
	if v == nil {
		return 0, false
	}
	if !isJSONNumber(v) {
		o.fail(name, "Input should be a valid number", "float_type")
		return 0, false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		o.fail(name, "Input should be a finite number", "finite_number")
		return 0, false
	}
	if f < min {
		o.fail(name, fmt.Sprintf("Input should be greater than or equal to %g", min), "greater_than_equal")
		return 0, false
	}
	return f, true
}

// boolean decodes an optional field that must be a JSON boolean (true or
// false, not "true" or 1); absent or null is nil.
func (o *object) boolean(name field) *bool {
	v := o.raw(name, false)
	if v == nil {
		return nil
	}
	switch string(v) {
	case "true":
		return new(true)
	case "false":
		return new(false)
	}
	o.fail(name, "Input should be a valid boolean", "bool_type")
	return nil
}

// jsonObject decodes a field that must be a JSON object (or null/absent:
// nil), compacted, nested at most tsdb.MaxParameterDepth deep.
func (o *object) jsonObject(name field) json.RawMessage {
	v := o.raw(name, false)
	if v == nil {
		return nil
	}
	if v[0] != '{' {
		o.fail(name, "Input should be a valid dictionary", "dict_type")
		return nil
	}
	if tsdb.JSONDepth(v) > tsdb.MaxParameterDepth {
		o.fail(name, fmt.Sprintf("Input should be nested at most %d levels deep", tsdb.MaxParameterDepth), "too_deep")
		return nil
	}
	return compact(v)
}

// compact answers a copy of v, valid JSON, without the white
// space between its tokens, as json.Compact would, in one pass without
// validating v again.
func compact(v []byte) []byte {
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case ' ', '\t', '\n', '\r':
		case '"':
			j := i + 1
			for ; v[j] != '"'; j++ {
				if v[j] == '\\' {
					j++
				}
			}
			out = append(out, v[i:j+1]...)
			i = j
		default:
			out = append(out, c)
		}
	}
	return out
}

// uuidField decodes a string field holding a UUID in the 36-character
// hyphenated form; ok is false when it is absent, null or bad, and a string
// of another form is reported through bad (the contract answers it with
// 400 once no 422 applies).
func (o *object) uuidField(name field, required bool) (id uuid.UUID, ok, bad bool) {
	v, ok := o.quoted(name, required)
	if !ok {
		return uuid.UUID{}, false, false
	}
	if id, ok := api.ParseUUIDBytes(v[1 : len(v)-1]); ok {
		return id, true, false // the common case: no escapes, nothing to copy
	}
	s, ok := o.text(name, required, false, 0)
	if !ok {
		return uuid.UUID{}, false, false
	}
	id, ok = api.ParseUUID(s)
	return id, ok, !ok
}

// isJSONNumber reports whether v is a JSON number literal (the raw value of
// a field: strings, booleans, arrays and objects are not).
func isJSONNumber(v []byte) bool {
	return len(v) > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9'))
}
