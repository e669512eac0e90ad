package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

// waitTimeout bounds every wait for the page; the whole test takes a few
// seconds when all goes well.
const waitTimeout = 15 * time.Second

// watchScript runs in the page before its own script (DevTools scripts are
// not subject to the page's CSP) and records what must never happen: a
// CSP violation, an uncaught error or rejection. It also records every
// data-state the page takes, and takes EventSource away from a page whose
// URL ends in #no-eventsource.
const watchScript = `
if (location.hash === '#no-eventsource') window.EventSource = undefined; // a browser without it
window.__problems = [];
window.__states = [];
document.addEventListener('securitypolicyviolation', (e) => window.__problems.push('CSP ' + e.violatedDirective + ' blocked ' + e.blockedURI));
window.addEventListener('error', (e) => window.__problems.push('error: ' + e.message));
window.addEventListener('unhandledrejection', (e) => window.__problems.push('unhandled rejection: ' + e.reason));
new MutationObserver(() => {
  const s = document.body && document.body.dataset.state;
  if (s && window.__states[window.__states.length - 1] !== s) window.__states.push(s);
}).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-state'] });
`

// browser is one headless Chromium tab.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	exec := realtools.RequireChromium(t)
	base, cancelBase := context.WithTimeout(context.Background(), 2*time.Minute)
	actx, cancelAlloc := chromedp.NewExecAllocator(base,
		chromedp.ExecPath(exec),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
		cancelBase()
	})
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: watchScript}); err != nil {
		t.Fatalf("start %s: %v", exec, err)
	}
	return &browser{t: t, ctx: ctx}
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v\n%s", err, b.describe())
	}
}

func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// describe answers what the page shows, for failure messages.
func (b *browser) describe() string {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		url: location.href, data: Object.assign({}, document.body.dataset),
		error: document.getElementById('error').hidden ? null : document.getElementById('error').textContent,
		token: document.getElementById('token-form').hidden ? null : document.getElementById('token-message').textContent,
		status: document.getElementById('status').textContent.trim(),
		problems: window.__problems, states: window.__states})`))
	if err != nil {
		return "page unreadable: " + err.Error()
	}
	return "page: " + s
}

// waitFor polls the JavaScript condition cond until it is true.
func (b *browser) waitFor(what, cond string) {
	b.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`Boolean(`+cond+`)`))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("waiting %s for %s (last error: %v)\n%s", waitTimeout, what, err, b.describe())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// noProblems fails the test when the page broke its CSP or threw.
func (b *browser) noProblems() {
	b.t.Helper()
	if p := eval[[]string](b, `window.__problems || []`); len(p) > 0 {
		b.t.Fatalf("the page had problems: %q", p)
	}
}

func jsString(s string) string {
	data, _ := json.Marshal(s)
	return string(data)
}

// readyFor is the condition of the page showing range and client.
func readyFor(rangeName, tool string) string {
	return fmt.Sprintf(`document.body.dataset.state === 'ready' && document.body.dataset.range === %s && document.body.dataset.tool === %s`,
		jsString(rangeName), jsString(tool))
}

// pageFigures answers every data-figure on the page, and fails on a name
// shown twice.
func (b *browser) pageFigures() map[string]string {
	b.t.Helper()
	var got struct {
		Figures map[string]string `json:"figures"`
		Count   int               `json:"count"`
	}
	raw := eval[[]byte](b, `(() => {
		const els = document.querySelectorAll('[data-figure]');
		return { count: els.length, figures: Object.fromEntries(Array.from(els, (e) => [e.dataset.figure, e.textContent.trim()])) };
	})()`)
	if err := json.Unmarshal(raw, &got); err != nil {
		b.t.Fatal(err)
	}
	if got.Count != len(got.Figures) {
		b.t.Fatalf("%d figure elements for %d names: a name is shown twice", got.Count, len(got.Figures))
	}
	return got.Figures
}

// expectFigures waits until the page shows rangeName and tool, then until
// every figure on it equals the API's answer for them, formatted, and no
// figure is missing; it also checks the trend chart against the API.
func (b *browser) expectFigures(s *service, rangeName, tool string) {
	b.t.Helper()
	b.waitFor("the page to show "+rangeName+" for "+tool, readyFor(rangeName, tool))
	q := url.Values{"time_range": {rangeName}}
	if tool != "all" {
		q.Set("tool_id", tool)
	}
	savings := s.getJSON("/metrics/api-savings?" + q.Encode())
	var breakdown map[string]any
	if rangeName != "all" {
		breakdown = s.getJSON("/metrics/tool-breakdown?" + q.Encode())
	}
	want := expectedFigures(savings, breakdown)
	for k, v := range expectedSpendFigures(s.getJSON("/metrics/spend?" + q.Encode())) {
		want[k] = v
	}
	deadline := time.Now().Add(waitTimeout)
	var got map[string]string
	for {
		got = b.pageFigures()
		if reflect.DeepEqual(got, want) {
			break
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s, %s: the page's figures differ from the API's:\n%s\n%s", rangeName, tool, figureDiff(got, want), b.describe())
		}
		time.Sleep(50 * time.Millisecond)
	}

	bars := eval[[]float64](b, `Array.from(document.querySelectorAll('#trend rect.bar'), (r) => Number(r.dataset.value))`)
	trends := savings["trends"].([]any)
	var sum float64
	for _, v := range bars {
		sum += v
	}
	total, _ := savings["total_tokens_prevented"].(json.Number).Float64()
	// The bucket count may differ by one when an hour or a day begins
	// between the page's request and this one; the sum may not.
	if math.Abs(float64(len(bars)-len(trends))) > 1 || sum != total {
		b.t.Errorf("%s, %s: %d bars summing to %v; the API has %d buckets summing to %v", rangeName, tool, len(bars), sum, len(trends), total)
	}
	b.noProblems()
}

func figureDiff(got, want map[string]string) string {
	names := map[string]bool{}
	for k := range got {
		names[k] = true
	}
	for k := range want {
		names[k] = true
	}
	var lines []string
	for k := range names {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			lines = append(lines, fmt.Sprintf("  %s: missing on the page, API %q", k, w))
		case !wok:
			lines = append(lines, fmt.Sprintf("  %s: page %q, not expected", k, g))
		case g != w:
			lines = append(lines, fmt.Sprintf("  %s: page %q, API %q", k, g, w))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// expectedFigures answers the figures the page must show for these API
// answers (breakdown is nil for "all", which /metrics/tool-breakdown does
// not serve), by name, formatted as the page formats them.
func expectedFigures(savings, breakdown map[string]any) map[string]string {
	want := map[string]string{}
	put := func(name, key string, obj map[string]any) {
		want[name] = figureText(key, obj[key].(json.Number))
	}
	for _, k := range []string{"total_tokens_prevented", "total_cost_saved", "savings_percentage", "total_operations",
		"api_cost_baseline", "api_cost_actual", "total_tokens_processed"} {
		put(k, k, savings)
	}
	byTool := savings["breakdown_by_tool"].(map[string]any)
	for _, tool := range []string{"read", "search"} {
		saved := byTool[tool].(map[string]any)
		if breakdown == nil {
			for _, k := range []string{"operations", "tokens_prevented", "cost_saved"} {
				put("breakdown_by_tool."+tool+"."+k, k, saved)
			}
			continue
		}
		put("breakdown_by_tool."+tool+".cost_saved", "cost_saved", saved)
		stats := breakdown[tool].(map[string]any)
		for _, k := range []string{"total_operations", "total_tokens_original", "total_tokens_actual", "total_tokens_prevented", "avg_response_time_ms"} {
			put("tool_breakdown."+tool+"."+k, k, stats)
		}
		for mode, m := range stats["by_mode"].(map[string]any) {
			for _, k := range []string{"count", "tokens_prevented", "avg_response_time_ms"} {
				put("tool_breakdown."+tool+".by_mode."+mode+"."+k, k, m.(map[string]any))
			}
		}
	}
	if breakdown != nil {
		put("tool_breakdown.total_tokens_prevented", "total_tokens_prevented", breakdown)
		put("tool_breakdown.total_cost_saved", "total_cost_saved", breakdown)
	}
	for mode, m := range savings["breakdown_by_mode"].(map[string]any) {
		for _, k := range []string{"operations", "tokens_prevented", "cost_saved"} {
			put("breakdown_by_mode."+mode+"."+k, k, m.(map[string]any))
		}
	}
	return want
}

// expectedSpendFigures answers the figures the page must show for a
// /metrics/spend answer.
func expectedSpendFigures(spend map[string]any) map[string]string {
	want := map[string]string{}
	for _, k := range []string{"cost_spent_usd", "cost_saved_usd", "savings_share_percentage"} {
		want["spend."+k] = figureText(k, spend[k].(json.Number))
	}
	for model, m := range spend["by_model"].(map[string]any) {
		for _, k := range []string{"cost_usd", "input", "output", "cache_read", "cache_creation"} {
			want["spend.by_model."+model+"."+k] = figureText(k, m.(map[string]any)[k].(json.Number))
		}
	}
	return want
}

// figureText formats the API value n of JSON key key as the page does:
// thousands separators, money with 2 to 4 decimals, percentages with 2,
// response times with 1.
func figureText(key string, n json.Number) string {
	f, err := n.Float64()
	if err != nil {
		return "bad number " + n.String()
	}
	switch {
	case key == "savings_percentage" || key == "savings_share_percentage":
		return decimal(f, 2, 2) + "%"
	case key == "avg_response_time_ms":
		return decimal(f, 1, 1)
	case strings.Contains(key, "cost"):
		switch {
		case f != 0 && math.Abs(f) < 0.00005:
			if f > 0 {
				return "<$0.0001"
			}
			return ">-$0.0001"
		case f < 0:
			return "-$" + decimal(-f, 2, 4)
		}
		return "$" + decimal(f, 2, 4)
	}
	return decimal(f, 0, 0)
}

// decimal formats f as en-US does (Intl.NumberFormat): from the shortest
// decimal that reads back as f, rounded half away from zero to at most
// maxFrac digits, at least minFrac kept, thousands grouped with commas.
func decimal(f float64, minFrac, maxFrac int) string {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	whole, frac, _ := strings.Cut(s, ".")
	digits := []byte(whole + frac)
	point := len(whole)
	if len(frac) > maxFrac {
		up := frac[maxFrac] >= '5'
		digits = digits[:point+maxFrac]
		for i := len(digits) - 1; up && i >= 0; i-- {
			if digits[i] == '9' {
				digits[i] = '0'
				continue
			}
			digits[i]++
			up = false
		}
		if up {
			digits = append([]byte{'1'}, digits...)
			point++
		}
	}
	whole, frac = string(digits[:point]), string(digits[point:])
	for len(frac) < minFrac {
		frac += "0"
	}
	for len(frac) > minFrac && strings.HasSuffix(frac, "0") {
		frac = frac[:len(frac)-1]
	}
	var grouped []string
	for len(whole) > 3 {
		grouped = append([]string{whole[len(whole)-3:]}, grouped...)
		whole = whole[:len(whole)-3]
	}
	out := strings.Join(append([]string{whole}, grouped...), ",")
	if frac != "" {
		out += "." + frac
	}
	return sign + out
}

func TestDecimalFormatsAsTheBrowser(t *testing.T) {
	for _, c := range []struct {
		f          float64
		min, max   int
		want       string
		key, money string
	}{
		{0, 0, 0, "0", "", ""},
		{1234567, 0, 0, "1,234,567", "", ""},
		{-150, 0, 0, "-150", "", ""},
		{0.0675, 2, 4, "0.0675", "", ""},
		{0.5, 2, 4, "0.50", "", ""},
		{0.00981, 2, 4, "0.0098", "", ""},
		{0.00225, 2, 4, "0.0023", "", ""},
		{59999.99995, 2, 4, "60,000.00", "", ""},
		{999.99996, 2, 4, "1,000.00", "", ""},
		{37.5, 2, 2, "37.50", "", ""},
		{12.25, 1, 1, "12.3", "", ""},
	} {
		if got := decimal(c.f, c.min, c.max); got != c.want {
			t.Errorf("decimal(%v, %d, %d) = %q, want %q", c.f, c.min, c.max, got, c.want)
		}
	}
	for n, want := range map[string]string{"0.000015": "<$0.0001", "-0.00225": "-$0.0023", "0": "$0.00", "1234.5": "$1,234.50"} {
		if got := figureText("cost_saved", json.Number(n)); got != want {
			t.Errorf("figureText(cost_saved, %s) = %q, want %q", n, got, want)
		}
	}
}

// TestPageInChromium drives the page in a real headless Chromium against
// the real service: every figure equals the API's, the controls change
// the range and the client and keep them in the URL, the page refreshes by
// itself as operations arrive on the live stream (and by its poll without
// the stream), shows a store outage, and asks for the API token once.
func TestPageInChromium(t *testing.T) {
	b := newBrowser(t)
	s := newService(t, "")
	s.seed()

	// The default view: 24h, every client.
	b.do(chromedp.Navigate(s.url + "/"))
	b.expectFigures(s, "24h", "all")
	labelled := eval[[]string](b, `Array.from(document.querySelectorAll('input'), (i) => i.labels && i.labels.length ? '' : (i.id || i.name)).filter(Boolean)`)
	if len(labelled) > 0 {
		t.Errorf("inputs without a label: %q", labelled)
	}

	// The range through its control; the URL follows.
	b.do(chromedp.Click(chromedp.CSS(`label[for="range-7d"]`)))
	b.expectFigures(s, "7d", "all")
	if loc := eval[string](b, `location.search`); !strings.Contains(loc, "time_range=7d") {
		t.Errorf("the URL does not keep the range: %s", loc)
	}

	// The client through the text field, as typed.
	b.do(chromedp.Click(chromedp.ID("tool-id")),
		chromedp.KeyEvent("a", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.KeyEvent("cursor"+kb.Enter))
	b.expectFigures(s, "7d", "cursor")
	if loc := eval[string](b, `location.search`); !strings.Contains(loc, "time_range=7d") || !strings.Contains(loc, "tool_id=cursor") {
		t.Errorf("the URL does not keep the range and the client: %s", loc)
	}

	// "all" has no per-tool detail; the page says so and shows the rest.
	b.do(chromedp.Click(chromedp.CSS(`label[for="range-all"]`)))
	b.expectFigures(s, "all", "cursor")

	// Back to the previous view through the history.
	b.do(chromedp.NavigateBack())
	b.expectFigures(s, "7d", "cursor")

	// A shared URL opens on its view, controls included.
	b.do(chromedp.Navigate(s.url + "/?time_range=30d&tool_id=codex"))
	b.expectFigures(s, "30d", "codex")
	if r, v := eval[bool](b, `document.getElementById('range-30d').checked`), eval[string](b, `document.getElementById('tool-id').value`); !r || v != "codex" {
		t.Errorf("controls of a shared URL: 30d checked %v, client %q", r, v)
	}

	// The screenshot: every client over 30 days.
	b.do(chromedp.Navigate(s.url + "/?time_range=30d"))
	b.expectFigures(s, "30d", "all")
	b.screenshot()

	// Nothing was loaded from elsewhere.
	origins := eval[[]string](b, `performance.getEntriesByType('resource').map((e) => e.name).filter((n) => !n.startsWith(location.origin + '/'))`)
	if len(origins) > 0 {
		t.Errorf("the page loaded from elsewhere: %q", origins)
	}

	// Live: with a poll interval of 10 minutes, an operation posted after
	// the page loaded shows up at once, through the stream.
	b.do(chromedp.Navigate(s.url + "/?time_range=1h&refresh=10m"))
	b.expectFigures(s, "1h", "all")
	b.waitFor("the stream to open", `document.body.dataset.stream === 'open' && /live/.test(document.getElementById('status').textContent)`)
	loads := eval[string](b, `document.body.dataset.loads`)
	posted := time.Now()
	s.track(seedOp{"aider", "search", "references", 9000, 450, nil, 55, time.Minute})
	b.waitFor("a refresh on the stream's event", `document.body.dataset.loads !== `+jsString(loads))
	b.expectFigures(s, "1h", "all")
	if got := b.pageFigures()["breakdown_by_mode.references.operations"]; got != "1" {
		t.Errorf("the refreshed page shows %q references operations, want 1", got)
	}
	t.Logf("the operation was on the page %v after its 200", time.Since(posted).Round(time.Millisecond))
	if since := time.Since(posted); since >= 10*time.Minute {
		t.Errorf("the page took %v: the poll, not the stream", since)
	}

	// In a browser without EventSource the page polls at its interval.
	b.do(chromedp.Navigate(s.url + "/?time_range=1h&refresh=1s#no-eventsource"))
	b.expectFigures(s, "1h", "all")
	if txt := eval[string](b, `document.getElementById('status').textContent`); !strings.Contains(txt, "Updated at") || !strings.Contains(txt, "every 1 s") {
		t.Errorf("status line without the stream: %q", txt)
	}
	loads = eval[string](b, `document.body.dataset.loads`)
	s.track(seedOp{"aider", "search", "references", 1000, 50, nil, 5, time.Minute})
	b.waitFor("a poll", `document.body.dataset.loads !== `+jsString(loads))
	b.expectFigures(s, "1h", "all")
	if got := b.pageFigures()["breakdown_by_mode.references.operations"]; got != "2" {
		t.Errorf("the polled page shows %q references operations, want 2", got)
	}
	if st := eval[string](b, `document.body.dataset.stream || ''`); st == "open" {
		t.Error("a stream opened without EventSource")
	}

	// A store outage is shown (the stream's next event finds it), and the
	// page recovers by itself, retrying at its interval.
	b.do(chromedp.Navigate(s.url + "/?time_range=1h&refresh=1s"))
	b.expectFigures(s, "1h", "all")
	b.waitFor("the stream to open", `document.body.dataset.stream === 'open'`)
	s.store.down.Store(true)
	s.track(seedOp{"aider", "read", "full", 100, 50, nil, 5, time.Minute})
	b.waitFor("the outage message", `document.body.dataset.state === 'error' && /HTTP 503/.test(document.getElementById('error').textContent) && /Store unavailable/.test(document.getElementById('error').textContent)`)
	s.store.down.Store(false)
	b.waitFor("recovery", `document.body.dataset.state === 'ready' && document.getElementById('error').hidden`)
	b.expectFigures(s, "1h", "all")
}

// TestPageAsksForTheTokenOnce: with a token configured, the page asks for
// it when the API answers 401, says when it is refused, then keeps it for
// the tab and does not ask again.
func TestPageAsksForTheTokenOnce(t *testing.T) {
	b := newBrowser(t)
	s := newService(t, "page-secret")
	s.seed()

	b.do(chromedp.Navigate(s.url + "/"))
	b.waitFor("the token prompt", `document.body.dataset.state === 'auth' && !document.getElementById('token-form').hidden`)
	if v := b.pageFigures()["total_tokens_prevented"]; v != "–" {
		t.Errorf("figures shown without a token: %q", v)
	}
	b.do(chromedp.SendKeys(chromedp.ID("token"), "wrong-secret"+kb.Enter))
	b.waitFor("the refusal", `document.body.dataset.state === 'auth' && /refused/.test(document.getElementById('token-message').textContent)`)
	if v := eval[string](b, `sessionStorage.getItem('omnimemory.apiToken') || ''`); v != "" {
		t.Errorf("a refused token is kept: %q", v)
	}
	b.do(chromedp.SendKeys(chromedp.ID("token"), "page-secret"+kb.Enter))
	b.expectFigures(s, "24h", "all")
	// The stream, which EventSource opens without headers, takes the token
	// as access_token.
	b.waitFor("the stream to open with the token", `document.body.dataset.stream === 'open'`)
	if v := eval[string](b, `sessionStorage.getItem('omnimemory.apiToken') || ''`); v != "page-secret" {
		t.Errorf("session storage holds %q", v)
	}

	// A reload and a change of view use the kept token without asking.
	b.do(chromedp.Reload())
	b.expectFigures(s, "24h", "all")
	b.do(chromedp.Click(chromedp.CSS(`label[for="range-1h"]`)))
	b.expectFigures(s, "1h", "all")
	if states := eval[[]string](b, `window.__states`); len(states) == 0 || contains(states, "auth") {
		t.Errorf("states after the reload: %q; want no token prompt", states)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// screenshot captures the whole page, checks it is a PNG of a page's size
// with more than one colour, and writes it to the test's folder and to
// $OMNIMEMORY_ARTIFACTS_DIR when set.
func (b *browser) screenshot() {
	b.t.Helper()
	data, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		b.t.Fatalf("the screenshot is no PNG: %v", err)
	}
	size := img.Bounds().Size()
	if size.X < 1000 || size.X > 3000 || size.Y < 900 || size.Y > 10000 {
		b.t.Errorf("screenshot of %dx%d, want about 1280 wide and a page tall", size.X, size.Y)
	}
	colours := map[[4]uint32]bool{}
	for y := 0; y < size.Y && len(colours) < 50; y += 7 {
		for x := 0; x < size.X; x += 7 {
			r, g, bl, a := img.At(x, y).RGBA()
			colours[[4]uint32{r, g, bl, a}] = true
		}
	}
	if len(colours) < 20 {
		b.t.Errorf("the screenshot has %d colours: a blank page?", len(colours))
	}
	dirs := []string{b.t.TempDir()}
	if d := os.Getenv("OMNIMEMORY_ARTIFACTS_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.t.Fatal(err)
		}
		p := filepath.Join(d, "page.png")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.t.Fatal(err)
		}
		b.t.Logf("screenshot %dx%d, %d bytes: %s", size.X, size.Y, len(data), p)
	}
}
