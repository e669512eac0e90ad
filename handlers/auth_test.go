package handlers_test

import "testing"

func TestBearerTokenGuardsEveryEndpointButHealthAndReady(t *testing.T) {
	const token = "s3cret-token"
	s := newService(t, serviceOpts{token: token})
	guarded := []struct{ method, path string }{
		{"POST", "/track/tool-operation"}, {"POST", "/track/tool-operations"},
		{"GET", "/metrics/tool-operations"}, {"GET", "/metrics/tool-breakdown"}, {"GET", "/metrics/api-savings"},
		{"POST", "/sessions/start"}, {"POST", "/sessions/get_or_create"}, {"GET", "/sessions/active"},
		{"GET", "/sessions/" + sessionA}, {"POST", "/sessions/" + sessionA + "/heartbeat"}, {"POST", "/sessions/" + sessionA + "/end"},
		{"GET", "/metrics"},
	}
	for _, g := range guarded {
		for name, headers := range map[string][]string{
			"missing": nil, "wrong": {"Authorization", "Bearer nope"}, "basic": {"Authorization", "Basic " + token},
			"prefix": {"Authorization", "Bearer " + token[:5]},
		} {
			var body any
			if g.method == "POST" {
				body = op(nil)
			}
			r := s.do(g.method, g.path, body, headers...)
			if r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with a %s token: %d", g.method, g.path, name, r.status)
			}
			assertDetail(t, r)
		}
	}
	// Nothing was stored by the refused requests.
	r := s.do("GET", "/metrics/tool-operations", nil, "Authorization", "Bearer "+token)
	if r.status != 200 || num(t, r.json(t), "total") != 0 {
		t.Errorf("refused requests stored something: %d %s", r.status, r.body)
	}
	if r := s.do("GET", "/sessions/"+sessionA, nil, "Authorization", "Bearer "+token); r.status != 404 {
		t.Errorf("a refused operation created its session: %d", r.status)
	}
	// The right token passes; health, ready and preflight need none.
	if r := s.do("POST", "/track/tool-operation", op(nil), "Authorization", "bearer "+token); r.status != 200 {
		t.Errorf("right token: %d %s", r.status, r.body)
	}
	for _, path := range []string{"/health", "/ready"} {
		if r := s.do("GET", path, nil); r.status != 200 {
			t.Errorf("%s without a token: %d", path, r.status)
		}
	}
	if r := s.do("OPTIONS", "/track/tool-operation", nil, "Origin", "http://localhost:8004", "Access-Control-Request-Method", "POST"); r.status != 204 {
		t.Errorf("preflight without a token: %d", r.status)
	}

	public := newService(t, serviceOpts{token: token, public: true})
	if r := public.do("GET", "/metrics", nil); r.status != 200 {
		t.Errorf("public /metrics without a token: %d", r.status)
	}
	if r := public.do("GET", "/metrics/api-savings", nil); r.status != 401 {
		t.Errorf("public metrics opened the API: %d", r.status)
	}
}
