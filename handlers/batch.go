package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// decodeBatch validates a batch body; every item error is reported with its
// location ["body", "operations", index, field]. With an idempotency key,
// item i's key is the batch's key and i.
func decodeBatch(data []byte, now time.Time, key string) ([]tsdb.Operation, error) {
	body, err := decodeObject(data)
	if err != nil {
		return nil, err
	}
	// One pass decodes every item into its fields; an item that is not an
	// object fails that pass, and the items are then taken one by one so
	// that the 422 names each bad one.
	var items []*members
	if v := body.raw(fOperations, false); v != nil && v[0] == '[' && objectItems(v, &items) {
		if len(items) < 1 || len(items) > api.MaxBatchOperations {
			items = nil
			body.array(fOperations, 1, api.MaxBatchOperations) // reports the length
		}
	} else {
		raws := body.array(fOperations, 1, api.MaxBatchOperations)
		items = make([]*members, len(raws))
		for i, raw := range raws {
			if item, err := decodeObject(raw); err == nil {
				items[i] = item.fields
			}
		}
	}
	if err := body.err(); err != nil {
		return nil, err
	}
	ops := make([]tsdb.Operation, 0, len(items))
	var errs []api.FieldError
	for i, fields := range items {
		if fields == nil { // not an object (null included)
			errs = append(errs, api.FieldError{Loc: itemLoc(i), Msg: notAnObjectMsg, Type: "model_attributes_type"})
			continue
		}
		item := &object{fields: fields, item: i}
		itemKey := ""
		if key != "" {
			itemKey = fmt.Sprintf("%s#%d", key, i)
		}
		op, err := decodeOperation(item, now, itemKey)
		if err != nil {
			var ve *validationError
			if errors.As(err, &ve) {
				errs = append(errs, ve.errs...)
			} else {
				errs = append(errs, api.FieldError{Loc: itemLoc(i, fSessionID.String()), Msg: invalidSessionID, Type: "uuid_parsing"})
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

// objectItems sets *items to the members of every item of v, a valid JSON
// array (a field of a body decodeObject took), nil for a null item, as
// json.Unmarshal into a []map[string]json.RawMessage does, in one pass
// over v; it answers false when an item is neither an object nor null, or
// has a name splitAt declines.
func objectItems(v json.RawMessage, items *[]*members) bool {
	out := []*members{}
	var chunk []members // the items' members, a few allocations for the whole batch
	for i := skipSpace(v, 1); v[i] != ']'; {
		switch v[i] {
		case 'n': // null: the array is valid JSON
			out = append(out, nil)
			i += len("null")
		case '{':
			if len(chunk) == cap(chunk) {
				chunk = make([]members, 0, min(max(2*cap(chunk), 8), 512))
			}
			chunk = chunk[:len(chunk)+1]
			m := &chunk[len(chunk)-1]
			end, ok := splitAt(v, i, m, false)
			if !ok {
				return false
			}
			out = append(out, m)
			i = end
		default:
			return false
		}
		if i = skipSpace(v, i); v[i] == ',' {
			i = skipSpace(v, i+1)
		}
	}
	*items = out
	return true
}

// array decodes a field that must be a JSON array of min..max items.
func (o *object) array(name field, min, max int) []json.RawMessage {
	v := o.raw(name, true)
	if v == nil {
		return nil
	}
	var items []json.RawMessage
	if v[0] != '[' || json.Unmarshal(v, &items) != nil {
		o.fail(name, "Input should be a valid list", "list_type")
		return nil
	}
	if len(items) < min {
		o.fail(name, fmt.Sprintf("List should have at least %d item after validation, not %d", min, len(items)), "too_short")
		return nil
	}
	if len(items) > max {
		o.fail(name, fmt.Sprintf("List should have at most %d items after validation, not %d", max, len(items)), "too_long")
		return nil
	}
	return items
}
