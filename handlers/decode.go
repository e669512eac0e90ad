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
	fields map[string]json.RawMessage
	loc    []any // location prefix of errors: ["body"] or ["body", "operations", 3]
	errs   []api.FieldError
}

// notAnObject answers the 422 of a body that is JSON but not an object.
func notAnObject() error {
	return fieldError(notAnObjectMsg, "model_attributes_type", "body")
}

const notAnObjectMsg = "Input should be a valid dictionary or object to extract fields from"

// bodyLoc is the location prefix of a body's errors; fail copies it.
var bodyLoc = []any{"body"}

// decodeObject parses data as a JSON object. A body that is not JSON, or not
// an object, is a 422.
func decodeObject(data []byte) (*object, error) {
	if validJSON(data) {
		if fields, ok := splitObject(data); ok {
			return &object{fields: fields, loc: bodyLoc}, nil
		}
	}
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
	return &object{fields: fields, loc: bodyLoc}, nil
}

// splitObject answers the members of data, valid JSON, as json.Unmarshal
// into a map of json.RawMessage would (the last of a repeated key wins),
// without its reflection and copies: the values are data's own bytes. It
// answers false, for json.Unmarshal to decide, when data is not an object
// or a key is not plain ASCII (an escape, or another encoding, needs
// json's decoding).
func splitObject(data []byte) (map[string]json.RawMessage, bool) {
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return nil, false
	}
	fields := make(map[string]json.RawMessage, 14) // an operation's 13 fields fit without growth
	if i = skipSpace(data, i+1); data[i] == '}' {
		return fields, true
	}
	for {
		j := i + 1 // data[i] is the key's opening quote
		for data[j] != '"' {
			if data[j] == '\\' || data[j] >= utf8.RuneSelf {
				return nil, false
			}
			j++
		}
		key, ok := fieldNames[string(data[i+1:j])]
		if !ok {
			key = string(data[i+1 : j])
		}
		start := skipSpace(data, skipSpace(data, j+1)+1) // past the colon
		end := skipValue(data, start)
		fields[key] = data[start:end:end]
		i = skipSpace(data, end)
		if data[i] == '}' {
			return fields, true
		}
		i = skipSpace(data, i+1) // past the comma
	}
}

// fieldNames are the keys of the contract's request bodies, so that
// splitObject allocates no string for them.
var fieldNames = func() map[string]string {
	names := map[string]string{}
	for _, v := range []any{api.OperationRequest{}, api.BatchRequest{}, api.SessionRequest{}} {
		t := reflect.TypeOf(v)
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			names[name] = name
		}
	}
	return names
}()

// elements answers the elements of data, a valid JSON array (validJSON),
// each without the white space around it and sharing data's memory; ok is
// false when data is not an array.
func elements(data []byte) ([]json.RawMessage, bool) {
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '[' {
		return nil, false
	}
	var out []json.RawMessage
	if i = skipSpace(data, i+1); data[i] == ']' {
		return out, true
	}
	for {
		end := skipValue(data, i)
		out = append(out, data[i:end:end])
		i = skipSpace(data, end)
		if data[i] == ']' {
			return out, true
		}
		i = skipSpace(data, i+1) // past the comma
	}
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

func (o *object) fail(name, msg, typ string) {
	loc := append(append([]any{}, o.loc...), name)
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
func (o *object) raw(name string, required bool) json.RawMessage {
	v, ok := o.fields[name]
	if !ok || string(v) == "null" {
		if required {
			o.fail(name, "Field required", "missing")
		}
		return nil
	}
	return v
}

// str decodes a string field; maxLen (in characters) 0 means unbounded;
// nonEmpty rejects "".
func (o *object) str(name string, required, nonEmpty bool, maxLen int) *string {
	v := o.raw(name, required)
	if v == nil {
		return nil
	}
	if v[0] != '"' || len(v) < 2 {
		o.fail(name, "Input should be a valid string", "string_type")
		return nil
	}
	var s string
	if inner := v[1 : len(v)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		s = string(inner) // no escapes: the text between the quotes is the string
	} else if err := json.Unmarshal(v, &s); err != nil {
		o.fail(name, "Input should be a valid string", "string_type")
		return nil
	}
	if nonEmpty && s == "" {
		o.fail(name, "String should have at least 1 character", "string_too_short")
		return nil
	}
	if maxLen > 0 && utf8.RuneCountInString(s) > maxLen {
		o.fail(name, fmt.Sprintf("String should have at most %d characters", maxLen), "string_too_long")
		return nil
	}
	return &s
}

// enum decodes a string field that must be one of allowed; the answer
// points into allowed.
func (o *object) enum(name string, required bool, allowed []string) *string {
	if v := o.fields[name]; len(v) > 2 && v[0] == '"' {
		for i, a := range allowed {
			if string(v[1:len(v)-1]) == a {
				return &allowed[i]
			}
		}
	}
	s := o.str(name, required, false, 0)
	if s == nil {
		return nil
	}
	for _, a := range allowed {
		if *s == a {
			return s
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
// "5000", 5000.0 or 5e3) within [min, MaxInt64].
func (o *object) integer(name string, required bool, min int64) *int64 {
	v := o.raw(name, required)
	if v == nil {
		return nil
	}
	s := string(v)
	if !isJSONNumber(s) {
		o.fail(name, "Input should be a valid integer", "int_type")
		return nil
	}
	if strings.ContainsAny(s, ".eE") {
		o.fail(name, "Input should be a valid integer, got a number with a fractional part or exponent", "int_from_float")
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if strings.HasPrefix(s, "-") {
			o.fail(name, fmt.Sprintf("Input should be greater than or equal to %d", min), "greater_than_equal")
		} else {
			o.fail(name, fmt.Sprintf("Input should be less than or equal to %d", int64(math.MaxInt64)), "less_than_equal")
		}
		return nil
	}
	if n < min {
		o.fail(name, fmt.Sprintf("Input should be greater than or equal to %d", min), "greater_than_equal")
		return nil
	}
	return &n
}

// number decodes a field that must be a finite JSON number >= min.
func (o *object) number(name string, required bool, min float64) *float64 {
	v := o.raw(name, required)
	if v == nil {
		return nil
	}
	s := string(v)
	if !isJSONNumber(s) {
		o.fail(name, "Input should be a valid number", "float_type")
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		o.fail(name, "Input should be a finite number", "finite_number")
		return nil
	}
	if f < min {
		o.fail(name, fmt.Sprintf("Input should be greater than or equal to %g", min), "greater_than_equal")
		return nil
	}
	return &f
}

// boolean decodes an optional field that must be a JSON boolean (true or
// false, not "true" or 1); absent or null is nil.
func (o *object) boolean(name string) *bool {
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
func (o *object) jsonObject(name string) json.RawMessage {
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
	if bytes.IndexAny(v, " \t\n\r") < 0 {
		return bytes.Clone(v) // valid JSON without white space: already compact
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		o.fail(name, "Input should be a valid dictionary", "dict_type")
		return nil
	}
	return buf.Bytes()
}

// uuidField decodes a string field holding a UUID in the 36-character
// hyphenated form; a string of another form is reported through bad (the
// contract answers it with 400 once no 422 applies).
func (o *object) uuidField(name string, required bool) (id *uuid.UUID, bad bool) {
	s := o.str(name, required, false, 0)
	if s == nil {
		return nil, false
	}
	u, ok := api.ParseUUID(*s)
	if !ok {
		return nil, true
	}
	return &u, false
}

// isJSONNumber reports whether s is a JSON number literal (the raw value of
// a field: strings, booleans, arrays and objects are not).
func isJSONNumber(s string) bool {
	return s != "" && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))
}
