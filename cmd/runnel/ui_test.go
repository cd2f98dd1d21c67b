package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The web UI, driven in a real headless Chromium against a real `runnel
// server` (SQLite, the in-process agent on the local shell backend): what a
// user does, through the pages they do it on. RUNNEL_UI_SCREENSHOTS=DIR saves
// screenshots of the main pages there (docs/screenshots is that directory in
// the repository).

// chromiumPath finds the browser, or skips (fails with RUNNEL_TEST_ALL=1).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser tests are not short")
	}
	for _, name := range []string{os.Getenv("RUNNEL_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium found (apt-get install chromium, or set RUNNEL_CHROMIUM)"
	if os.Getenv("RUNNEL_TEST_ALL") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg + "; RUNNEL_TEST_ALL=1 makes this a failure")
	return ""
}

// browser is a headless Chromium tab that fails the test on any uncaught
// exception or console error (a CSP violation is one).
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	mu   sync.Mutex
	errs []string
}

func newBrowser(t *testing.T, base string, width, height int) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(width, height),
		chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	b := &browser{t: t, ctx: ctx, base: base}
	chromedp.ListenTarget(ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			b.record("exception: " + e.ExceptionDetails.Error())
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				b.record("console.error: " + strings.Join(parts, " "))
			}
		}
	})
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return b
}

// newTab opens another tab of the same browser (its cookies are shared).
// A tab that navigates between a page with Cross-Origin-Opener-Policy
// (Runnel's) and one without (a forge's sign-in page) is moved to a new
// browsing context group, which this DevTools client does not follow: a
// journey across origins is driven tab by tab, each starting at a fresh
// page. The tab lasts until owner's end.
func (b *browser) newTab(owner testing.TB) *browser {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	owner.Cleanup(cancel)
	if err := chromedp.Run(ctx); err != nil {
		b.t.Fatalf("open a tab: %v", err)
	}
	return &browser{t: b.t, ctx: ctx, base: b.base}
}

func (b *browser) record(s string) {
	b.mu.Lock()
	b.errs = append(b.errs, s)
	b.mu.Unlock()
}

// run runs actions with a deadline, failing the test with what.
func (b *browser) run(what string, timeout time.Duration, actions ...chromedp.Action) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		var page string
		// Bounded: a page in the middle of a navigation may never answer.
		pctx, pcancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer pcancel()
		_ = chromedp.Run(pctx, chromedp.Evaluate(`location.href + "\n" + document.querySelector('main')?.innerText.slice(0, 1500)`, &page))
		b.t.Fatalf("%s: %v\npage: %s\nbrowser errors: %v", what, err, page, b.errors())
	}
	b.checkErrors(what)
}

func (b *browser) errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...)
}

func (b *browser) checkErrors(what string) {
	b.t.Helper()
	if errs := b.errors(); len(errs) > 0 {
		b.t.Fatalf("after %s, the page reported errors: %s", what, strings.Join(errs, "\n"))
	}
}

// clearField empties an input or textarea as a user selecting all and
// deleting would (an input event follows).
func clearField(sel string) chromedp.Action {
	return chromedp.Evaluate(fmt.Sprintf(`(el => { el.value = ''; el.dispatchEvent(new Event('input', {bubbles: true})); })(document.querySelector(%q))`, sel), nil)
}

// clickJS clicks the element sel selects as a user would, looked up and
// clicked in one step in the page (an element the page redraws between a
// lookup and a click by node id cannot be missed).
func clickJS(sel string) chromedp.Action {
	return chromedp.Poll(fmt.Sprintf(`(el => el ? (el.click(), true) : false)(document.querySelector(%q))`, sel), nil,
		chromedp.WithPollingInterval(50*time.Millisecond))
}

// waitJS polls a JavaScript expression until it is truthy.
func waitJS(expr string) chromedp.Action {
	return chromedp.Poll(expr, nil, chromedp.WithPollingInterval(50*time.Millisecond))
}

// eval evaluates expr into out.
func (b *browser) eval(expr string, out any) {
	b.t.Helper()
	b.run("evaluate "+expr, 10*time.Second, chromedp.Evaluate(expr, out))
}

// open navigates to a path of the UI and waits for the page's <h1>.
func (b *browser) open(path string) {
	b.t.Helper()
	b.run("open "+path, 20*time.Second, chromedp.Navigate(b.base+path), chromedp.WaitVisible(`main h1`, chromedp.ByQuery))
}

// shot saves a screenshot when RUNNEL_UI_SCREENSHOTS names a directory.
func (b *browser) shot(name string) {
	b.t.Helper()
	dir := os.Getenv("RUNNEL_UI_SCREENSHOTS")
	if dir == "" {
		return
	}
	var png []byte
	b.run("screenshot "+name, 20*time.Second, chromedp.Sleep(300*time.Millisecond), chromedp.CaptureScreenshot(&png))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func startUIServer(t *testing.T) (*proc, *client) {
	t.Helper()
	srv := startServerProc(t, "ui", "", "--embedded-agent-capacity", "4", "--embedded-agent-backend", "local")
	return srv, &client{t: t, base: "http://" + srv.addr}
}

func TestWebUISecurityHeaders(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	srv, _ := startUIServer(t)
	for _, path := range []string{"/", "/runs/run_x?step=sr_y&line=3", "/assets/app.js"} {
		resp, err := http.Get("http://" + srv.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "default-src 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("GET %s: CSP allows inline or eval: %q", path, csp)
		}
		if got := resp.Header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("GET %s: X-Frame-Options %q", path, got)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", path, got)
		}
	}
	// The API keeps its own 404s: the UI does not swallow unknown API paths.
	resp, err := http.Get("http://" + srv.addr + "/api/v1/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("GET /api/v1/nope: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestWebUI(t *testing.T) {
	srv, c := startUIServer(t)
	_ = srv
	b := newBrowser(t, c.base, 1280, 900)
	if dir := os.Getenv("RUNNEL_UI_SCREENSHOTS"); dir != "" {
		os.MkdirAll(dir, 0o755)
	}
	// Each part needs the ones before it: stop at the first failure.
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("sign in", func(t *testing.T) {
		b.t = t
		// A page behind sign-in sends there and comes back after.
		b.run("open /pipelines", 20*time.Second, chromedp.Navigate(c.base+"/pipelines"), chromedp.WaitVisible(`#token`, chromedp.ByID))
		var url string
		b.eval(`location.pathname + location.search`, &url)
		if url != "/signin?next=%2Fpipelines" {
			t.Fatalf("not sent to sign in: %s", url)
		}
		b.run("wrong token", 20*time.Second,
			chromedp.SendKeys(`#token`, "rnl_not-a-real-token-000", chromedp.ByID),
			chromedp.Click(`form.signin button[type=submit]`, chromedp.ByQuery),
			waitJS(`document.querySelector('.alert.error')?.textContent.includes('not accepted')`))
		b.shot("signin")
		b.run("right token", 20*time.Second,
			clearField(`#token`),
			chromedp.SendKeys(`#token`, testToken, chromedp.ByID),
			chromedp.Click(`form.signin button[type=submit]`, chromedp.ByQuery),
			waitJS(`location.pathname === '/pipelines' && document.querySelector('main h1')?.textContent === 'Pipelines'`),
			waitJS(`document.querySelector('.who .subject')?.textContent === 'admin'`))
		// The page keeps no token: the session is an HttpOnly cookie no
		// script reads, and nothing is in the page's storage or URL.
		var state struct {
			Stored int    `json:"stored"`
			Cookie string `json:"cookie"`
		}
		b.eval(`({stored: [sessionStorage, localStorage].map(s => Object.keys(s).filter(k => s.getItem(k).includes('`+testToken+`') || s.getItem(k).startsWith('rns_')).length).reduce((a, b) => a + b), cookie: document.cookie})`, &state)
		if state.Stored != 0 || state.Cookie != "" {
			t.Fatalf("the page can read a credential: %+v", state)
		}
	})

	var pipelineID string
	step("create a pipeline with the editor", func(t *testing.T) {
		b.t = t
		b.run("new pipeline form", 20*time.Second,
			chromedp.Click(`a[href="/pipelines/new"]`, chromedp.ByQuery),
			chromedp.WaitVisible(`input[name=projectId]`, chromedp.ByQuery),
			chromedp.SendKeys(`input[name=projectId]`, "demo", chromedp.ByQuery),
			chromedp.SendKeys(`input[name=name]`, "hello-ui", chromedp.ByQuery),
			chromedp.SendKeys(`input[name=description]`, "made in the browser", chromedp.ByQuery),
			chromedp.Click(`form button[type=submit]`, chromedp.ByQuery),
			waitJS(`location.pathname.endsWith('/definition') && document.querySelector('.editor textarea')`),
			waitJS(`document.querySelector('.vstate')?.textContent.includes('valid')`))
		b.eval(`location.pathname.split('/')[2]`, &pipelineID)
		// A typo: validation as you type marks its line.
		broken := "namespace: demo.hello\nversion: v1\nvariables:\n  who: world\njobs:\n  - name: hello\n    stepz:\n      - run: echo hi\n"
		b.run("type a broken definition", 30*time.Second,
			clearField(`.editor textarea`),
			chromedp.SendKeys(`.editor textarea`, broken, chromedp.ByQuery),
			waitJS(`document.querySelector('.vstate')?.textContent.includes('problem')`),
			waitJS(`[...document.querySelectorAll('.editor .gutter .err')].some(e => e.textContent === '7')`),
			waitJS(`document.querySelector('#problems')?.textContent.includes('stepz')`))
		b.shot("editor-error")
		fixed := "namespace: demo.hello\nversion: v1\n# who to greet\nvariables:\n  who: world\njobs:\n  - name: hello\n    steps:\n      - name: greet\n        run: |\n          printf '\\033[32mgreen\\033[0m and plain\\n'\n          echo \"hello, ${{ variables.who }}\"\n"
		b.run("fix it and save", 30*time.Second,
			clearField(`.editor textarea`),
			chromedp.SendKeys(`.editor textarea`, fixed, chromedp.ByQuery),
			waitJS(`document.querySelector('.vstate')?.textContent.includes('✓ valid')`),
			waitJS(`document.querySelectorAll('.editor .gutter .err').length === 0`),
			chromedp.SendKeys(`input[name=commitMessage]`, "first version", chromedp.ByQuery),
			chromedp.Click(`.page .row button.btn.primary`, chromedp.ByQuery),
			waitJS(`document.querySelector('.toast')?.textContent.includes('Saved version 1')`))
		b.shot("editor")
		// Reopened, the definition is the text as written, comment included.
		b.open("/pipelines/" + pipelineID + "/definition")
		b.run("reopen", 20*time.Second, waitJS(`document.querySelector('.editor textarea')?.value.includes('# who to greet')`))
		// Someone else saves meanwhile: saving again shows the conflict and keeps the text.
		var spec map[string]any
		c.do("GET", "/api/v1/pipelines/"+pipelineID+"/spec", nil, &spec)
		if env := c.do("POST", "/api/v1/pipelines/"+pipelineID+"/spec/save", map[string]any{"text": strings.Replace(fixed, "world", "team", 1), "format": "yaml", "commitMessage": "from elsewhere", "editor": "other"}, nil); env.Code != 0 {
			t.Fatalf("concurrent save: %+v", env)
		}
		b.run("conflict", 30*time.Second,
			chromedp.SendKeys(`.editor textarea`, "# mine\n", chromedp.ByQuery),
			chromedp.Click(`.page .row button.btn.primary`, chromedp.ByQuery),
			waitJS(`document.querySelector('.alert.warn')?.textContent.includes('changed since you opened it')`),
			waitJS(`document.querySelector('.alert.warn')?.textContent.includes('from elsewhere')`),
			waitJS(`document.querySelector('.editor textarea').value.includes('# mine')`))
		var head struct {
			Version int    `json:"version"`
			Editor  string `json:"editor"`
		}
		c.do("GET", "/api/v1/pipelines/"+pipelineID+"/spec", nil, &head)
		if head.Version != 2 || head.Editor != "other" {
			t.Fatalf("the conflicting save overwrote: head %+v", head)
		}
		b.run("load theirs", 20*time.Second,
			chromedp.Click(`//button[text()="Discard mine and load theirs"]`, chromedp.BySearch),
			waitJS(`document.querySelector('.editor textarea').value.includes('who: team') && !document.querySelector('.alert.warn')`))
	})

	step("trigger with variables and watch the log", func(t *testing.T) {
		b.t = t
		b.open("/pipelines/" + pipelineID)
		b.run("trigger", 60*time.Second,
			chromedp.Click(`//button[contains(., "Run")]`, chromedp.BySearch),
			chromedp.WaitVisible(`dialog input[name=who]`, chromedp.ByQuery),
			clearField(`dialog input[name=who]`),
			chromedp.SendKeys(`dialog input[name=who]`, "browser", chromedp.ByQuery),
			chromedp.Click(`dialog button[value=run]`, chromedp.ByQuery),
			waitJS(`location.pathname.startsWith('/runs/')`),
			waitJS(`document.querySelector('.log-view')?.textContent.includes('hello, browser')`),
			waitJS(`document.querySelector('.run-head .badge')?.textContent.includes('success')`))
		// ANSI colours are rendered, not printed.
		var ansi struct {
			Green bool `json:"green"`
			Raw   bool `json:"raw"`
		}
		b.eval(`({green: [...document.querySelectorAll('.log-view .f2')].some(e => e.textContent === 'green'), raw: document.querySelector('.log-view').textContent.includes('[32m')})`, &ansi)
		if !ansi.Green || ansi.Raw {
			t.Fatalf("ANSI rendering: %+v", ansi)
		}
		b.shot("run")
		// Timestamps toggle; the download is the whole stored log as text.
		dl := t.TempDir()
		b.run("timestamps", 20*time.Second,
			chromedp.Click(`//button[text()="Timestamps"]`, chromedp.BySearch),
			waitJS(`document.querySelectorAll('.log-line .ts').length === 2 && /^\d\d:\d\d:\d\d\.\d{3}$/.test(document.querySelector('.log-line .ts').textContent)`),
			chromedp.Click(`//button[text()="Timestamps"]`, chromedp.BySearch),
			waitJS(`document.querySelectorAll('.log-line .ts').length === 0`),
			cdpbrowser.SetDownloadBehavior(cdpbrowser.SetDownloadBehaviorBehaviorAllow).WithDownloadPath(dl),
			chromedp.Click(`//button[contains(., "Download")]`, chromedp.BySearch))
		var got []byte
		waitFor(t, 20*time.Second, "the downloaded log", func() bool {
			files, _ := filepath.Glob(filepath.Join(dl, "*.log"))
			if len(files) != 1 {
				return false
			}
			got, _ = os.ReadFile(files[0])
			return len(got) > 0
		})
		if want := "\x1b[32mgreen\x1b[0m and plain\nhello, browser\n"; string(got) != want {
			t.Fatalf("downloaded log %q, want %q", got, want)
		}
		b.run("runs list", 20*time.Second,
			// Clicked in the page, not through a node id: the finished run's
			// page redraws its header when its status stream ends, which may
			// be at this moment.
			clickJS(`.crumbs a[href^="/pipelines/pl_"]`),
			waitJS(`document.querySelector('tbody a[href^="/runs/"]')?.textContent === '#1'`))
		b.shot("pipeline-runs")
		b.open("/pipelines")
		b.run("list shows the last run", 20*time.Second, waitJS(`document.querySelector('tbody .badge')?.textContent.includes('success')`))
		b.shot("pipelines")
	})

	step("settings and webhook", func(t *testing.T) {
		b.t = t
		b.open("/pipelines/" + pipelineID + "/settings")
		b.run("edit and save", 30*time.Second,
			clearField(`input[name=description]`),
			chromedp.SendKeys(`input[name=description]`, "edited in the browser", chromedp.ByQuery),
			clearField(`input[name=triggerCronExpression]`),
			chromedp.SendKeys(`input[name=triggerCronExpression]`, "0 4 * * *", chromedp.ByQuery),
			chromedp.SendKeys(`input[name=triggerTimezone]`, "Europe/Paris", chromedp.ByQuery),
			chromedp.Click(`form.card button[type=submit]`, chromedp.ByQuery),
			waitJS(`document.querySelector('.toast')?.textContent.includes('Settings saved')`),
			waitJS(`document.querySelector('.page-head .sub')?.textContent.includes('0 4 * * *')`))
		var p struct {
			Description string  `json:"description"`
			Cron        string  `json:"triggerCronExpression"`
			TZ          string  `json:"triggerTimezone"`
			NextStart   *string `json:"nextStart"`
		}
		c.do("GET", "/api/v1/pipelines/"+pipelineID, nil, &p)
		if p.Description != "edited in the browser" || p.Cron != "0 4 * * *" || p.TZ != "Europe/Paris" || p.NextStart == nil {
			t.Fatalf("saved settings: %+v", p)
		}
		b.run("generate a webhook secret", 30*time.Second,
			chromedp.Click(`//button[text()="Generate secret"]`, chromedp.BySearch),
			waitJS(`/^[0-9a-f]{64}$/.test(document.querySelector('.secret-once')?.textContent || '')`))
		var set struct {
			WebhookSecretSet bool `json:"webhookSecretSet"`
		}
		c.do("GET", "/api/v1/pipelines/"+pipelineID, nil, &set)
		if !set.WebhookSecretSet {
			t.Fatal("no webhook secret after generating one")
		}
	})

	step("stop a long run", func(t *testing.T) {
		b.t = t
		long := c.createPipeline("long-ui", `{"namespace":"demo.long","version":"v1","jobs":[{"name":"forever","steps":[{"name":"tick","run":"i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"}]}]}`)
		b.open("/pipelines/" + long)
		b.run("start and watch it live", 60*time.Second,
			chromedp.Click(`//button[contains(., "Run")]`, chromedp.BySearch),
			chromedp.WaitVisible(`dialog button[value=run]`, chromedp.ByQuery),
			chromedp.Click(`dialog button[value=run]`, chromedp.ByQuery),
			waitJS(`document.querySelector('.log-view')?.textContent.includes('tick 5')`),
			chromedp.Click(`//button[contains(., "Pause")]`, chromedp.BySearch),
			waitJS(`document.querySelector('.run-head .badge')?.textContent.includes('paused')`),
			chromedp.Click(`//button[contains(., "Resume")]`, chromedp.BySearch),
			waitJS(`document.querySelector('.run-head .badge')?.textContent.includes('running')`),
			chromedp.Click(`//button[contains(., "Stop")]`, chromedp.BySearch),
			chromedp.WaitVisible(`dialog button[value=stop]`, chromedp.ByQuery),
			chromedp.SendKeys(`dialog input[name=reason]`, "enough", chromedp.ByQuery),
			chromedp.Click(`dialog button[value=stop]`, chromedp.ByQuery),
			waitJS(`document.querySelector('.run-head .badge')?.textContent.includes('cancelled')`),
			waitJS(`!document.querySelector('.run-head') || ![...document.querySelectorAll('.run-head button')].some(b => b.textContent.includes('Stop'))`))
	})

	step("approve a gated job", func(t *testing.T) {
		b.t = t
		gated := c.createPipeline("gated-ui", `{"namespace":"demo.gated","version":"v1","jobs":[{"name":"build","steps":[{"run":"echo built"}]},{"name":"ship","needs":["build"],"approval":{"message":"Ship it?"},"steps":[{"run":"echo shipped"}]}]}`)
		runID := c.trigger(gated, "")
		b.open("/runs/" + runID)
		b.run("gate shown", 60*time.Second,
			waitJS(`document.querySelector('.approval')?.textContent.includes('Ship it?')`),
			waitJS(`[...document.querySelectorAll('.job .reason')].some(e => e.textContent.includes('waiting for the approval'))`))
		b.run("the job graph says what ship waits for", 10*time.Second,
			waitJS(`[...document.querySelectorAll('.job')].some(j => j.textContent.includes('ship') && j.querySelector('.needs')?.textContent === '↳ after build')`))
		var withNeeds struct {
			Stages []struct {
				Jobs []struct {
					Key   string   `json:"key"`
					Needs []string `json:"needs"`
				} `json:"jobs"`
			} `json:"stages"`
		}
		c.do("GET", "/api/v1/pipelines/runs/"+runID, nil, &withNeeds)
		if jobs := withNeeds.Stages[0].Jobs; len(jobs) != 2 || len(jobs[0].Needs) != 0 || len(jobs[1].Needs) != 1 || jobs[1].Needs[0] != "default/build" {
			t.Fatalf("needs in the run detail: %+v", withNeeds)
		}
		b.shot("run-approval")
		b.run("approve", 60*time.Second,
			chromedp.SendKeys(`.approval input`, "looks good", chromedp.ByQuery),
			chromedp.Click(`.approval button.ok`, chromedp.ByQuery),
			waitJS(`!document.querySelector('.approval')`),
			waitJS(`document.querySelector('.run-head .badge')?.textContent.includes('success')`))
		var approvals []struct {
			Status    string `json:"status"`
			DecidedBy string `json:"decidedBy"`
			Comment   string `json:"comment"`
		}
		c.do("GET", "/api/v1/pipelines/runs/"+runID+"/approvals", nil, &approvals)
		if len(approvals) != 1 || approvals[0].Status != "approved" || approvals[0].Comment != "looks good" {
			t.Fatalf("approvals: %+v", approvals)
		}
	})

	step("a retried job", func(t *testing.T) {
		b.t = t
		flaky := c.createPipeline("flaky-ui", `{"namespace":"demo.flaky","version":"v1","jobs":[{"name":"flaky","retry":{"max":1,"delay":"1s"},"steps":[{"name":"try","run":"echo attempt $RUNNEL_JOB_ATTEMPT; sleep 1; test $RUNNEL_JOB_ATTEMPT -ge 2"}]}]}`)
		runID := c.trigger(flaky, "")
		b.open("/runs/" + runID)
		// The first attempt fails; the page follows the job into its second
		// attempt (new step runs) and shows that attempt's log.
		b.run("attempt 2", 60*time.Second,
			waitJS(`document.querySelector('.job .jmeta')?.textContent.includes('attempt 2')`),
			waitJS(`document.querySelector('.run-head .badge')?.textContent.includes('success')`),
			waitJS(`document.querySelector('.log-view')?.textContent.includes('attempt 2')`))
	})

	step("a 200000-line log", func(t *testing.T) {
		b.t = t
		big := c.createPipeline("big-log", `{"namespace":"demo.big","version":"v1","jobs":[{"name":"print","steps":[{"name":"lines","run":"seq 1 200000 | sed 's/^/line /'"}]}]}`)
		// Opened while the step prints: history, then the live stream, with
		// no line lost or repeated (the view keys lines by seq).
		runID := c.trigger(big, "")
		start := time.Now()
		b.open("/runs/" + runID)
		b.run("all lines loaded", 120*time.Second,
			waitJS(`document.querySelector('.log-status')?.textContent.includes('200,000 lines')`),
			waitJS(`document.querySelector('.run-head .badge')?.textContent.includes('success')`))
		loaded := time.Since(start)
		var m struct {
			Rows     int     `json:"rows"`
			Last     string  `json:"last"`
			ScrollMs float64 `json:"scrollMs"`
			Mid      string  `json:"mid"`
		}
		// Only the rows in view are in the DOM; jumping to the middle redraws in a frame.
		b.run("scroll", 20*time.Second, chromedp.Evaluate(`new Promise(resolve => {
			const v = document.querySelector('.log-view');
			const rows = v.querySelectorAll('.log-line').length;
			const last = [...v.querySelectorAll('.log-line .tx')].pop().textContent;
			const t0 = performance.now();
			v.scrollTop = v.scrollHeight / 2;
			requestAnimationFrame(() => requestAnimationFrame(() => {
				const mid = [...v.querySelectorAll('.log-line .tx')].map(e => e.textContent).find(t => t.startsWith('line 10000'));
				resolve({rows, last, scrollMs: performance.now() - t0, mid: mid || ''});
			}));
		})`, &m, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
		t.Logf("200000 lines loaded and shown in %v; %d rows in the DOM; a jump to the middle drew in %.1f ms", loaded, m.Rows, m.ScrollMs)
		if m.Rows > 300 || m.Last != "line 200000" || m.Mid == "" {
			t.Fatalf("virtualised view: %+v", m)
		}
		if m.ScrollMs > 500 {
			t.Fatalf("a jump took %.0f ms", m.ScrollMs)
		}
		b.run("search", 20*time.Second,
			chromedp.SendKeys(`.log-bar input[type=search]`, "line 123456\n", chromedp.ByQuery),
			waitJS(`document.querySelector('.log-bar .count')?.textContent === '1/1'`),
			waitJS(`[...document.querySelectorAll('.log-view mark.current')].some(e => e.textContent === 'line 123456')`))
		// A link to a line opens the log there.
		var stepID string
		b.eval(`new URLSearchParams(document.querySelector('.log-line a.ln').getAttribute('href').split('?')[1]).get('step')`, &stepID)
		// The same 200000 lines over the WebSocket, one message per line and
		// in batches, timed in this browser in this run.
		var ws struct {
			PerLine float64 `json:"perLine"`
			Batched float64 `json:"batched"`
			N1      int     `json:"n1"`
			N2      int     `json:"n2"`
		}
		b.run("WebSocket per line and batched", 120*time.Second, chromedp.Evaluate(fmt.Sprintf(`import('/assets/lib/live.js').then(async (live) => {
			const time = (params) => new Promise(resolve => {
				const t0 = performance.now();
				let n = 0;
				live.subscribe('logs', params, (m) => {
					if (m.type === 'line') n++;
					if (m.type === 'lines') n += m.data.length;
					if (m.type === 'end') resolve([performance.now() - t0, n]);
				});
			});
			const [perLine, n1] = await time({stepRunId: %q});
			const [batched, n2] = await time({stepRunId: %q, batch: true});
			return {perLine, batched, n1, n2};
		})`, stepID, stepID), &ws, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
		t.Logf("200000 lines over the WebSocket to the browser: %.0f ms one message per line, %.0f ms batched (%.1fx)", ws.PerLine, ws.Batched, ws.PerLine/ws.Batched)
		if ws.N1 != 200000 || ws.N2 != 200000 {
			t.Fatalf("lines received: %d per line, %d batched", ws.N1, ws.N2)
		}
		if ws.Batched*2 > ws.PerLine {
			t.Errorf("batches are not clearly faster: %.0f ms vs %.0f ms per line", ws.Batched, ws.PerLine)
		}
		b.open(fmt.Sprintf("/runs/%s?step=%s&line=150000", runID, stepID))
		b.run("line link", 60*time.Second, waitJS(`document.querySelector('.log-line.target .tx')?.textContent === 'line 150000'`))
		b.shot("run-big-log")
	})

	step("first paint of the run page", func(t *testing.T) {
		b.t = t
		var runs struct {
			Items []struct {
				RunID string `json:"runId"`
			} `json:"items"`
		}
		c.do("GET", "/api/v1/pipelines/"+pipelineID+"/runs", nil, &runs)
		var fcp, drawn []float64
		for range 5 {
			var m struct {
				FCP   float64 `json:"fcp"`
				Drawn float64 `json:"drawn"`
			}
			b.run("load the run page", 30*time.Second,
				chromedp.Navigate(c.base+"/runs/"+runs.Items[0].RunID),
				waitJS(`document.querySelector('.run-head') && performance.getEntriesByName('first-contentful-paint').length`),
				chromedp.Evaluate(`({fcp: performance.getEntriesByName('first-contentful-paint')[0].startTime, drawn: performance.getEntriesByName('runnel:run-drawn')[0]?.startTime || -1})`, &m))
			fcp = append(fcp, m.FCP)
			drawn = append(drawn, m.Drawn)
		}
		t.Logf("run page: first contentful paint %v ms; run drawn %v ms", fcp, drawn)
		if median(fcp) > 200 {
			t.Errorf("first paint of the run page: median %.0f ms, over 200 ms", median(fcp))
		}
	})

	step("admin pages", func(t *testing.T) {
		b.t = t
		for _, p := range []struct{ path, h1, shot string }{
			{"/agents", "Agents", "agents"},
			{"/secrets", "Secrets", "secrets"},
			{"/credentials", "Credentials", "credentials"},
			{"/images", "Image repositories", "images"},
		} {
			b.open(p.path)
			var h1 string
			b.eval(`document.querySelector('main h1').textContent`, &h1)
			if h1 != p.h1 {
				t.Errorf("%s: h1 %q", p.path, h1)
			}
			b.shot(p.shot)
		}
		b.run("an agent is listed", 20*time.Second, chromedp.Navigate(c.base+"/agents"), waitJS(`document.querySelector('main table')?.textContent.includes('online')`))
	})

	step("phone and dark", func(t *testing.T) {
		b.t = t
		b.run("phone size, dark", 20*time.Second,
			emulation.SetDeviceMetricsOverride(390, 844, 2, true),
			emulation.SetEmulatedMedia().WithFeatures([]*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}))
		b.open("/pipelines")
		var overflow bool
		b.eval(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow)
		if overflow {
			t.Errorf("the pipelines page scrolls sideways on a phone")
		}
		b.shot("phone-pipelines-dark")
		var runs struct {
			Items []struct {
				RunID string `json:"runId"`
			} `json:"items"`
		}
		c.do("GET", "/api/v1/pipelines/"+pipelineID+"/runs", nil, &runs)
		b.open("/runs/" + runs.Items[len(runs.Items)-1].RunID)
		b.run("run page on a phone", 20*time.Second, waitJS(`document.querySelector('.log-view')?.textContent.includes('hello, browser')`))
		b.eval(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow)
		if overflow {
			t.Errorf("the run page scrolls sideways on a phone")
		}
		b.shot("phone-run-dark")
	})

	step("keyboard only", func(t *testing.T) {
		b.t = t
		b.open("/pipelines/" + pipelineID)
		// Tab to the Run button, Enter; the dialog's first field has the
		// focus; type, Enter runs (not Cancel).
		var focused string
		for i := 0; i < 40 && !strings.Contains(focused, "Run"); i++ {
			b.run("tab", 5*time.Second, chromedp.KeyEvent(kb.Tab), chromedp.Evaluate(`document.activeElement.textContent`, &focused))
		}
		if !strings.Contains(focused, "Run") {
			t.Fatalf("Tab never reached the Run button (last: %q)", focused)
		}
		b.run("run from the keyboard", 60*time.Second,
			chromedp.KeyEvent(kb.Enter),
			waitJS(`document.activeElement?.name === 'who'`),
			chromedp.Evaluate(`document.activeElement.select()`, nil),
			chromedp.KeyEvent("keys"),
			chromedp.KeyEvent(kb.Enter),
			waitJS(`location.pathname.startsWith('/runs/')`),
			waitJS(`document.querySelector('.log-view')?.textContent.includes('hello, keys')`))
	})

	step("sign out", func(t *testing.T) {
		b.t = t
		b.run("reset the viewport", 10*time.Second, emulation.ClearDeviceMetricsOverride())
		b.open("/pipelines")
		var status int
		b.run("sign out", 20*time.Second,
			chromedp.Click(`//button[text()="Sign out"]`, chromedp.BySearch),
			waitJS(`location.pathname === '/signin'`),
			chromedp.Evaluate(`fetch('/api/v1/me').then(r => r.status)`, &status, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
		if status != 401 {
			t.Fatalf("after signing out the session still answers %d", status)
		}
	})
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}
