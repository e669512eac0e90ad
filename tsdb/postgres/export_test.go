package postgres

// LockExpire is the advisory lock that one replica at a time holds while
// it expires, for the tests to hold as another replica would.
const LockExpire = lockExpire
