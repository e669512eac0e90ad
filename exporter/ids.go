package exporter

import (
	"strings"

	"github.com/google/uuid"
)

// idempotencyNamespace is the UUIDv5 namespace of operation ids derived
// from a client's Idempotency-Key.
var idempotencyNamespace = uuid.MustParse("6f6d6e69-6d65-5d6f-8279-6d6574726963")

// OperationID answers the id of an operation the client sent without an
// operation_id: derived from its idempotency key and session when key is
// set, so that a retry gets the same id and is stored once (keyed); else a
// new time-ordered id, which appends to the stores' id indexes.
func OperationID(session uuid.UUID, key string) (id uuid.UUID, keyed bool) {
	if key != "" {
		return derivedID(idempotencyNamespace, session.String(), key), true
	}
	id, err := uuid.NewV7()
	if err != nil {
		id = uuid.New()
	}
	return id, false
}

// derivedID answers the UUIDv5 of parts, joined by newlines, in namespace
// ns: the same parts give the same id every time, which is how every id
// the service derives (rather than draws) makes a retry be stored once.
func derivedID(ns uuid.UUID, parts ...string) uuid.UUID {
	return uuid.NewSHA1(ns, []byte(strings.Join(parts, "\n")))
}
