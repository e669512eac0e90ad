package client

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	p := RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Jitter: 0.5}.withDefaults()
	for _, tc := range []struct {
		retry    int
		r        float64
		want     time.Duration
		describe string
	}{
		{1, 0, 100 * time.Millisecond, "first retry, no jitter drawn"},
		{2, 0, 200 * time.Millisecond, "doubles"},
		{3, 0.999999, 200*time.Millisecond + 200, "at most half taken off"},
		{10, 0, time.Second, "capped"},
		{60, 0.5, 750 * time.Millisecond, "capped, then jittered"},
	} {
		if got := p.backoff(tc.retry, tc.r); got != tc.want {
			t.Errorf("%s: backoff(%d, %v) = %s, want %s", tc.describe, tc.retry, tc.r, got, tc.want)
		}
	}
	none := RetryPolicy{Jitter: -1}.withDefaults()
	if got := none.backoff(1, 0.9); got != none.InitialBackoff {
		t.Errorf("without jitter: %s", got)
	}
	d := RetryPolicy{}.withDefaults()
	if d.MaxAttempts != 4 || d.InitialBackoff != 250*time.Millisecond || d.MaxBackoff != 5*time.Second ||
		d.Multiplier != 2 || d.Jitter != 0.5 || d.MaxRetryAfter != 30*time.Second {
		t.Errorf("defaults %+v", d)
	}
}

// TestRetryClasses: which failures each kind of call retries.
func TestRetryClasses(t *testing.T) {
	network := &netError{errors.New("connection reset by peer")}
	status := func(code int) error { return &APIError{StatusCode: code} }
	for _, tc := range []struct {
		class  retryClass
		err    error
		unsent bool
		want   bool
	}{
		{retryIdempotent, network, false, true},
		{retryIdempotent, status(http.StatusBadGateway), false, true},
		{retryIdempotent, status(http.StatusGatewayTimeout), false, true},
		{retryIdempotent, status(http.StatusInternalServerError), false, false},
		{retryIdempotent, status(http.StatusConflict), false, false},
		{retryUnsent, network, false, false},
		{retryUnsent, network, true, true},
		{retryUnsent, status(http.StatusServiceUnavailable), false, true},
		{retryUnsent, status(http.StatusTooManyRequests), false, true},
		{retryUnsent, status(http.StatusBadGateway), false, false},
		{retryUnsent, status(http.StatusGatewayTimeout), false, false},
		{retryNever, network, true, false},
	} {
		if got := retryable(tc.class, tc.err, tc.unsent); got != tc.want {
			t.Errorf("retryable(%d, %v, unsent=%v) = %v, want %v", tc.class, tc.err, tc.unsent, got, tc.want)
		}
	}
}
