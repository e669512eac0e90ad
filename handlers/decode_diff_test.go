package handlers

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// decodeBatchOneByOne is the plain form of decodeBatch, kept as its oracle:
// the operations array as raw items, each item decoded on its own.
func decodeBatchOneByOne(data []byte, now time.Time, key string) ([]tsdb.Operation, error) {
	body, err := decodeObject(data)
	if err != nil {
		return nil, err
	}
	raws := body.array(fOperations, 1, api.MaxBatchOperations)
	if err := body.err(); err != nil {
		return nil, err
	}
	var ops []tsdb.Operation
	var errs []api.FieldError
	for i, raw := range raws {
		loc := []any{"body", "operations", i}
		item, err := decodeObject(raw)
		if err != nil {
			errs = append(errs, api.FieldError{Loc: loc, Msg: "Input should be a valid dictionary or object to extract fields from", Type: "model_attributes_type"})
			continue
		}
		item.item = i
		op, err := decodeOperation(item, now, fmt.Sprintf("%s#%d", key, i))
		if err != nil {
			var ve *validationError
			if errors.As(err, &ve) {
				errs = append(errs, ve.errs...)
			} else {
				errs = append(errs, api.FieldError{Loc: append(loc, "session_id"), Msg: invalidSessionID, Type: "uuid_parsing"})
			}
			continue
		}
		ops = append(ops, op)
	}
	if len(errs) > 0 {
		return nil, &validationError{errs: errs}
	}
	return ops, nil
}

// checkSameAsOneByOne fails unless decodeBatch answers data exactly as the
// oracle does: the same operations (ids are derived from a key, so they are
// comparable), or the same error status and body.
func checkSameAsOneByOne(t *testing.T, data []byte) {
	t.Helper()
	got, gotErr := decodeBatch(data, fuzzNow, "k")
	want, wantErr := decodeBatchOneByOne(data, fuzzNow, "k")
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("%q: error %v, one by one %v", data, gotErr, wantErr)
	}
	if gotErr != nil {
		render := func(err error) string {
			rec := httptest.NewRecorder()
			writeError(rec, slog.New(slog.DiscardHandler), err)
			return fmt.Sprint(rec.Code, " ", rec.Body.String())
		}
		if g, w := render(gotErr), render(wantErr); g != w {
			t.Fatalf("%q:\nanswer     %s\none by one %s", data, g, w)
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\noperations %+v\none by one %+v", data, got, want)
	}
}

func TestDecodeBatchSameAsOneByOne(t *testing.T) {
	bad := strings.Replace(validOp, `"read"`, `"write"`, 1)
	for _, body := range []string{
		`{"operations":[` + validOp + `]}`,
		`{"operations":[` + validOp + `,` + validOp + `]}`,
		`{"operations":[]}`, `{"operations":[1,"x",null,{}]}`, `{"operations":{}}`, `{"operations":null}`, `{}`,
		`{"operations":[` + bad + `,` + validOp + `,` + bad + `]}`,
		`{"operations":[` + validOp + `,null]}`,
		`{"operations":[` + strings.Replace(validOp, `"src/main.py"`, `"src/\u00e9t\u00e9.py"`, 1) + `]}`,
		`{"operations":[` + strings.Replace(validOp, `"src/main.py"`, `"src/\ud800.py"`, 1) + `]}`,
		`{"operations":[` + strings.Replace(validOp, `"src/main.py"`, "\"src/\xff.py\"", 1) + `]}`,
		`{"operations":[` + strings.Replace(validOp, `"tool_name"`, `"Tool_Name"`, 1) + `]}`,
		`{"Operations":[` + validOp + `]}`,
		`{"operations":[` + validOp + `],"operations":[` + bad + `]}`,
		string(batchBody(api.MaxBatchOperations + 1)),
		string(batchBody(50)),
	} {
		checkSameAsOneByOne(t, []byte(body))
	}
}

// FuzzDecodeBatchSameAsOneByOne: whatever the body, the batch decoder and
// its oracle agree.
func FuzzDecodeBatchSameAsOneByOne(f *testing.F) {
	f.Add([]byte(`{"operations":[` + validOp + `,` + validOp + `]}`))
	f.Add([]byte(`{"operations":[1,"x",null,{}]}`))
	f.Add(batchBody(3))
	f.Fuzz(func(t *testing.T, data []byte) { checkSameAsOneByOne(t, data) })
}
