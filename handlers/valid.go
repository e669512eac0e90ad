package handlers

// The validator below answers as json.Valid does for every input
// (FuzzScanAsEncodingJSON compares them), in one pass without
// encoding/json's per-byte calls to its scanner's state functions: a batch
// body of 5,000 operations is validated several times faster. splitBody
// validates a body with it as it splits it.

// maxJSONDepth is encoding/json's bound on the nesting of arrays and
// objects.
const maxJSONDepth = 10000

// validValue answers the index just past the JSON value at i of data, at
// nesting depth, and whether there is a valid one.
func validValue(data []byte, i, depth int) (int, bool) {
	if i >= len(data) {
		return i, false
	}
	switch c := data[i]; {
	case c == '{':
		return validObject(data, i, depth+1)
	case c == '[':
		return validArray(data, i, depth+1)
	case c == '"':
		return validString(data, i)
	case c == '-' || '0' <= c && c <= '9':
		return validNumber(data, i)
	case c == 't':
		return validLiteral(data, i, "true")
	case c == 'f':
		return validLiteral(data, i, "false")
	case c == 'n':
		return validLiteral(data, i, "null")
	}
	return i, false
}

// validObject answers the index past the object at i (data[i] is '{').
func validObject(data []byte, i, depth int) (int, bool) {
	i, more, ok := validOpen(data, i, depth, '}')
	for more {
		ok = i < len(data) && data[i] == '"'
		if ok {
			i, ok = validString(data, i)
		}
		if !ok {
			return i, false
		}
		if i = skipSpace(data, i); i >= len(data) || data[i] != ':' {
			return i, false
		}
		if i, ok = validValue(data, skipSpace(data, i+1), depth); !ok {
			return i, false
		}
		i, more, ok = validNext(data, i, '}')
	}
	return i, ok
}

// validArray answers the index past the array at i (data[i] is '[').
func validArray(data []byte, i, depth int) (int, bool) {
	i, more, ok := validOpen(data, i, depth, ']')
	for more {
		if i, ok = validValue(data, i, depth); !ok {
			return i, false
		}
		i, more, ok = validNext(data, i, ']')
	}
	return i, ok
}

// validOpen takes the opening byte of an array or object at i, at depth:
// it answers the index of its first member or element (more), or the
// index past it when it is empty, and whether it is valid so far.
func validOpen(data []byte, i, depth int, closing byte) (next int, more, ok bool) {
	if depth > maxJSONDepth {
		return i, false, false
	}
	if i = skipSpace(data, i+1); i < len(data) && data[i] == closing {
		return i + 1, false, true
	}
	return i, true, true
}

// validNext takes what follows a member or element that ends at i: it
// answers the index of the next one (more), or the index past the
// closing byte, and whether it is valid so far.
func validNext(data []byte, i int, closing byte) (next int, more, ok bool) {
	if i = skipSpace(data, i); i < len(data) {
		switch data[i] {
		case ',':
			return skipSpace(data, i+1), true, true
		case closing:
			return i + 1, false, true
		}
	}
	return i, false, false
}

// validString answers the index past the string at i (data[i] is '"'):
// no control character, every escape one of JSON's. Like json.Valid it
// does not check that the bytes are UTF-8.
func validString(data []byte, i int) (int, bool) {
	for i++; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return i, false
		case c == '\\':
			if i++; i >= len(data) {
				return i, false
			}
			switch data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(data)-i < 5 {
					return i, false
				}
				for _, h := range data[i+1 : i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return i, false
					}
				}
				i += 4
			default:
				return i, false
			}
		}
	}
	return i, false
}

// validNumber answers the index past the number at i: an optional minus,
// an integer without leading zeros, an optional fraction and exponent.
func validNumber(data []byte, i int) (int, bool) {
	if data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && '1' <= data[i] && data[i] <= '9':
		i = skipDigits(data, i+1)
	default:
		return i, false
	}
	if i < len(data) && data[i] == '.' {
		if i++; i >= len(data) || !isDigit(data[i]) {
			return i, false
		}
		i = skipDigits(data, i+1)
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		if i++; i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || !isDigit(data[i]) {
			return i, false
		}
		i = skipDigits(data, i+1)
	}
	return i, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// skipDigits answers the index of the first byte at or after i that is not
// a decimal digit.
func skipDigits(data []byte, i int) int {
	for i < len(data) && isDigit(data[i]) {
		i++
	}
	return i
}

// validLiteral answers the index past lit at i, if it is there.
func validLiteral(data []byte, i int, lit string) (int, bool) {
	if len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit {
		return i + len(lit), true
	}
	return i, false
}
