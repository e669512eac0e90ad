package postgres

import (
	"fmt"
	"time"

	"github.com/google/uuid"
)

// LockExpire is the advisory lock that one replica at a time holds while
// it expires, for the tests to hold as another replica would.
const LockExpire = lockExpire

// ExpirySQL are the statements of one expiry step, with arguments that
// make them valid on the month partition of January 2025.
var ExpirySQL = map[string]struct {
	SQL  string
	Args []any
}{
	"walk ids":         {fmt.Sprintf(walkIDsSQL, "tool_operations_p202501"), []any{time.Time{}, uuid.Nil, 1000}},
	"delete ops":       {fmt.Sprintf(expireOpsSQL, "tool_operations_p202501"), []any{time.Date(2025, 1, 16, 0, 0, 0, 0, time.UTC), 1000}},
	"delete spend":     {expireSpendSQL, []any{time.Date(2025, 1, 16, 0, 0, 0, 0, time.UTC), 1000}},
	"move the horizon": {dialect.AdvanceHorizonSQL(), []any{int64(1)}},
}
