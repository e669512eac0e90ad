package query

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// qlValue is one value of a row of an InfluxQL answer: a number's text, a
// string's (unescaped), true, false or null. A number or a string without
// escapes is a part of its chunk's text, not a copy: a value kept beyond
// the chunk must be cloned (strings.Clone), or it keeps the chunk.
type qlValue struct {
	text string
	kind qlKind
}

type qlKind uint8

const (
	kindNull qlKind = iota
	kindNumber
	kindString
	kindTrue
	kindFalse
)

// str answers v's text when v is a string.
func (v qlValue) str() (string, bool) { return v.text, v.kind == kindString }

// boolean answers v when v is true or false.
func (v qlValue) boolean() (value, ok bool) {
	return v.kind == kindTrue, v.kind == kindTrue || v.kind == kindFalse
}

// String is v as it reads in JSON, for errors.
func (v qlValue) String() string {
	switch v.kind {
	case kindNull:
		return "null"
	case kindString:
		return fmt.Sprintf("%q", v.text)
	case kindTrue:
		return "true"
	case kindFalse:
		return "false"
	}
	return v.text
}

// qlRows are the rows of a series of an InfluxQL answer ("values"): arrays
// of scalars. Decoding them with encoding/json into [][]any cost a string,
// an interface and a growing slice per value, most of a cold read's
// allocations (1.3 GB for the 2,000,000 points of a 30-day top of files)
// and a third of its CPU time. UnmarshalJSON copies the chunk's text once
// and makes every row a part of one array of values.
type qlRows [][]qlValue

// UnmarshalJSON decodes b, the valid JSON (encoding/json checks it before
// calling) of an array of arrays of scalars, or null.
func (r *qlRows) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*r = nil
		return nil
	}
	// Upper bounds: a value per comma and one more, a row per bracket.
	values := make([]qlValue, 0, bytes.Count(b, []byte{','})+1)
	rows := make([][]qlValue, 0, bytes.Count(b, []byte{'['}))
	p := qlParser{s: string(b)}
	if !p.consume('[') {
		return errors.New("influx: influxql: values: not an array")
	}
	for !p.consume(']') {
		if len(rows) > 0 && !p.consume(',') {
			return p.errorf("a comma between rows")
		}
		if !p.consume('[') {
			return p.errorf("a row (an array)")
		}
		start := len(values)
		for !p.consume(']') {
			if len(values) > start && !p.consume(',') {
				return p.errorf("a comma between values")
			}
			v, err := p.value()
			if err != nil {
				return err
			}
			values = append(values, v)
		}
		rows = append(rows, values[start:len(values):len(values)])
	}
	*r = rows
	return nil
}

// qlParser reads the scalars of qlRows.UnmarshalJSON from s at i.
type qlParser struct {
	s string
	i int
}

func (p *qlParser) errorf(want string) error {
	return fmt.Errorf("influx: influxql: values: want %s at offset %d", want, p.i)
}

func (p *qlParser) skipSpace() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// consume skips space and c, and answers whether c was there.
func (p *qlParser) consume(c byte) bool {
	p.skipSpace()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// value reads one scalar.
func (p *qlParser) value() (qlValue, error) {
	p.skipSpace()
	if p.i >= len(p.s) {
		return qlValue{}, p.errorf("a value")
	}
	s := p.s[p.i:]
	switch c := s[0]; {
	case c == '"':
		escaped, high := false, false
		for j := 1; j < len(s); j++ {
			switch c := s[j]; {
			case c == '\\':
				escaped = true
				j++
			case c >= utf8.RuneSelf:
				high = true
			case c == '"':
				p.i += j + 1
				// encoding/json, which unescapes, also replaces bytes
				// that are not UTF-8 (influxd writes none).
				if !escaped && (!high || utf8.ValidString(s[1:j])) {
					return qlValue{text: s[1:j], kind: kindString}, nil
				}
				var text string
				if err := json.Unmarshal([]byte(s[:j+1]), &text); err != nil {
					return qlValue{}, fmt.Errorf("influx: influxql: values: %w", err)
				}
				return qlValue{text: text, kind: kindString}, nil
			}
		}
		return qlValue{}, p.errorf("the end of a string")
	case c == '-' || c >= '0' && c <= '9':
		j := 1
		for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == 'e' || s[j] == 'E' || s[j] == '+' || s[j] == '-') {
			j++
		}
		p.i += j
		return qlValue{text: s[:j], kind: kindNumber}, nil
	}
	for _, lit := range [...]struct {
		text string
		kind qlKind
	}{{"null", kindNull}, {"true", kindTrue}, {"false", kindFalse}} {
		if len(s) >= len(lit.text) && s[:len(lit.text)] == lit.text {
			p.i += len(lit.text)
			return qlValue{kind: lit.kind}, nil
		}
	}
	return qlValue{}, p.errorf("a number, a string, true, false or null")
}
