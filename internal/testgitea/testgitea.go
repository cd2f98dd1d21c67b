// Package testgitea gives tests a real Gitea: a Git forge with a GitHub-like
// REST API and an OAuth2/OpenID Connect provider. Each Start runs a fresh
// instance (SQLite, in a temporary directory) on a free loopback port, with an
// administrator, and drives it over HTTP: users, organisations, repositories,
// OAuth2 applications, and the browser's side of an OAuth2 authorization
// (sign-in form, then grant form) without a browser.
//
// The binary is built once by .ci/gitea.sh into
// ${RUNNEL_TEST_CACHE:-$HOME/.cache/runnel-test}/gitea-<version>/ (about 8
// minutes on 2 cores), with the directory of Gitea's module source, which it
// reads its templates from, recorded next to it in the file static-root.
// Without that build the test is skipped, unless RUNNEL_TEST_ALL=1 (as in CI),
// which makes it fail: no silent skips in CI. RUNNEL_TEST_GITEA_BIN names
// another binary (its static root then comes from static-root next to it, or
// from RUNNEL_TEST_GITEA_STATIC).
//
// Gitea's pages render without CSS or JavaScript (the front-end assets are not
// built); the API, Git over HTTP, OAuth2 and webhooks all work.
package testgitea

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Version is the Gitea release .ci/gitea.sh builds.
const Version = "1.26.0"

// Binary finds the Gitea build: the binary and its STATIC_ROOT_PATH (the
// module source holding templates and translations). ok is false when either
// is missing.
func Binary() (bin, staticRoot string, ok bool) {
	bin = os.Getenv("RUNNEL_TEST_GITEA_BIN")
	if bin == "" {
		bin = filepath.Join(CacheDir(), "gitea")
	}
	staticRoot = os.Getenv("RUNNEL_TEST_GITEA_STATIC")
	if staticRoot == "" {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(bin), "static-root"))
		if err != nil {
			return bin, "", false
		}
		staticRoot = strings.TrimSpace(string(b))
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return bin, staticRoot, false
	}
	if fi, err := os.Stat(filepath.Join(staticRoot, "templates")); err != nil || !fi.IsDir() {
		return bin, staticRoot, false
	}
	return bin, staticRoot, true
}

// CacheDir is where .ci/gitea.sh builds Gitea:
// ${RUNNEL_TEST_CACHE:-$HOME/.cache/runnel-test}/gitea-<Version>.
func CacheDir() string {
	root := os.Getenv("RUNNEL_TEST_CACHE")
	if root == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		root = filepath.Join(home, ".cache", "runnel-test")
	}
	return filepath.Join(root, "gitea-"+Version)
}

// Server is a running Gitea.
type Server struct {
	// URL is the root URL, without a trailing slash: http://127.0.0.1:PORT.
	// It is also the OpenID Connect issuer.
	URL string
	// AdminUser and AdminPassword sign in the site administrator, which the
	// API helpers act as (HTTP basic authentication).
	AdminUser     string
	AdminPassword string
	// Dir is the instance's directory (app.ini, data, repositories, gitea.log),
	// removed when the test ends.
	Dir string

	client *http.Client
	mu     sync.Mutex
	teams  map[string]int64 // org → id of its "members" team
}

// Start runs a fresh Gitea for the test, stopped and removed when it ends.
// Without a Gitea build the test is skipped (fails with RUNNEL_TEST_ALL=1).
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, static, ok := Binary()
	if !ok {
		msg := "no Gitea build at " + bin + " (with its static-root file): run .ci/gitea.sh"
		if os.Getenv("RUNNEL_TEST_ALL") == "1" {
			tb.Fatal(msg)
		}
		tb.Skip(msg + " (or set RUNNEL_TEST_ALL=1 to make this a failure)")
	}
	dir, err := os.MkdirTemp("", "runnel-gitea-")
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{
		AdminUser:     "runnel-admin",
		AdminPassword: "Admin-" + randomHex(12),
		Dir:           dir,
		client:        &http.Client{Timeout: 60 * time.Second},
		teams:         map[string]int64{},
	}
	p := &process{bin: bin, static: static, dir: dir}
	tb.Cleanup(func() {
		p.stop()
		if tb.Failed() {
			tb.Logf("Gitea log (%s), last lines:\n%s", p.logPath(), p.logTail(60))
		}
		_ = os.RemoveAll(dir)
	})

	// The database and the administrator: the port does not matter yet.
	if err := p.writeConfig(0); err != nil {
		tb.Fatal(err)
	}
	if out, err := p.run("migrate"); err != nil {
		tb.Fatalf("gitea migrate: %v\n%s", err, out)
	}
	if out, err := p.run("admin", "user", "create", "--admin",
		"--username", s.AdminUser, "--password", s.AdminPassword,
		"--email", s.AdminUser+"@example.com", "--must-change-password=false"); err != nil {
		tb.Fatalf("gitea admin user create: %v\n%s", err, out)
	}

	// The web server, on a port found free just before; another process may
	// take it in between, hence the retries.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		if err := p.writeConfig(port); err != nil {
			tb.Fatal(err)
		}
		s.URL = "http://127.0.0.1:" + strconv.Itoa(port)
		err = p.startWeb(s.URL, s.client)
		if err == nil {
			break
		}
		p.stop()
		if attempt < 3 && strings.Contains(p.logTail(30), "address already in use") {
			continue
		}
		tb.Fatalf("gitea web: %v\nGitea log (%s), last lines:\n%s", err, p.logPath(), p.logTail(60))
	}
	return s
}

// process is one Gitea installation and its web server.
type process struct {
	bin, static, dir string

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  *os.File
}

func (p *process) logPath() string { return filepath.Join(p.dir, "gitea.log") }

func (p *process) writeConfig(port int) error {
	d := p.dir
	secret := randomHex(32)
	if b, err := os.ReadFile(filepath.Join(d, "secret-key")); err == nil {
		secret = string(b)
	} else if err := os.WriteFile(filepath.Join(d, "secret-key"), []byte(secret), 0o600); err != nil {
		return err
	}
	// Gitea writes the secrets it generates (INTERNAL_TOKEN) into app.ini:
	// keep them when the port changes.
	var generated []string
	if b, err := os.ReadFile(filepath.Join(d, "app.ini")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "INTERNAL_TOKEN") {
				generated = append(generated, line)
			}
		}
	}
	ini := fmt.Sprintf(`APP_NAME = Runnel test Gitea
RUN_MODE = prod
WORK_PATH = %[1]s

[database]
DB_TYPE = sqlite3
PATH = %[1]s/data/gitea.db
SQLITE_JOURNAL_MODE = WAL

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = %[2]d
DOMAIN = 127.0.0.1
ROOT_URL = http://127.0.0.1:%[2]d/
APP_DATA_PATH = %[1]s/data
STATIC_ROOT_PATH = %[3]s
OFFLINE_MODE = true
DISABLE_SSH = true
START_SSH_SERVER = false
LFS_START_SERVER = false

[security]
INSTALL_LOCK = true
SECRET_KEY = %[4]s
%[5]s

[repository]
ROOT = %[1]s/repositories

[oauth2]
ENABLED = true

[webhook]
ALLOWED_HOST_LIST = loopback
DELIVER_TIMEOUT = 10

[migrations]
ALLOW_LOCALNETWORKS = true

[service]
DISABLE_REGISTRATION = false
REGISTER_EMAIL_CONFIRM = false
ENABLE_NOTIFY_MAIL = false
ENABLE_CAPTCHA = false
DEFAULT_KEEP_EMAIL_PRIVATE = false
DEFAULT_ALLOW_CREATE_ORGANIZATION = true

[mailer]
ENABLED = false

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[indexer]
ISSUE_INDEXER_TYPE = db

[actions]
ENABLED = false

[packages]
ENABLED = false

[api]
ENABLE_SWAGGER = false

[log]
MODE = console
LEVEL = Info
`, d, port, p.static, secret, strings.Join(generated, "\n"))
	return os.WriteFile(filepath.Join(d, "app.ini"), []byte(ini), 0o600)
}

func (p *process) command(args ...string) *exec.Cmd {
	args = append([]string{"--work-path", p.dir, "--config", filepath.Join(p.dir, "app.ini"),
		"--custom-path", filepath.Join(p.dir, "custom")}, args...)
	cmd := exec.Command(p.bin, args...)
	cmd.Dir = p.dir
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GITEA_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env,
		"GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT=true",
		"GITEA_WORK_DIR="+p.dir,
		"HOME="+filepath.Join(p.dir, "home"),
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// run runs a Gitea command to completion; its output is also appended to the log.
func (p *process) run(args ...string) ([]byte, error) {
	cmd := p.command(args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if f, ferr := os.OpenFile(p.logPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600); ferr == nil {
		fmt.Fprintf(f, "$ gitea %s\n%s", strings.Join(args, " "), out.Bytes())
		f.Close()
	}
	return out.Bytes(), err
}

// startWeb starts `gitea web` and waits until GET /api/v1/version answers.
func (p *process) startWeb(root string, client *http.Client) error {
	f, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "$ gitea web (%s)\n", root)
	cmd := p.command("web")
	cmd.Stdout = f
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	p.cmd, p.log, p.done = cmd, f, make(chan struct{})
	done := p.done
	go func() {
		_ = cmd.Wait()
		close(done)
	}()

	deadline := time.Now().Add(90 * time.Second)
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, root+"/api/v1/version", nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /api/v1/version: %s: %s", resp.Status, body)
		}
		cancel()
		select {
		case <-done:
			return fmt.Errorf("exited before answering (%v)", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer within 90s: %v", err)
		}
		time.Sleep(delay)
	}
}

// stop kills the web server (its whole process group) and waits for it.
func (p *process) stop() {
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
	p.log.Close()
	p.cmd = nil
}

func (p *process) logTail(n int) string {
	b, err := os.ReadFile(p.logPath())
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// APIError is a non-2xx answer of Gitea's API.
type APIError struct {
	Method, Path string
	StatusCode   int
	Body         string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("gitea %s %s: %d: %s", e.Method, e.Path, e.StatusCode, strings.TrimSpace(e.Body))
}

// Do calls the API (path below /api/v1) as the administrator: in, when not
// nil, is sent as JSON, and a 2xx answer is decoded into out when not nil.
// Another status is an *APIError.
func (s *Server) Do(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.URL+"/api/v1"+path, body)
	if err != nil {
		return err
	}
	req.SetBasicAuth(s.AdminUser, s.AdminPassword)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &APIError{Method: method, Path: path, StatusCode: resp.StatusCode, Body: string(b)}
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("gitea %s %s: %w: %s", method, path, err, b)
		}
	}
	return nil
}

// API is Do that fails the test on error.
func (s *Server) API(tb testing.TB, method, path string, in, out any) {
	tb.Helper()
	if err := s.Do(method, path, in, out); err != nil {
		tb.Fatal(err)
	}
}

// CreateUser creates an active user (no password change required) and
// returns its id, the `sub` of its ID tokens.
func (s *Server) CreateUser(tb testing.TB, login, password, email string) int64 {
	tb.Helper()
	var u struct {
		ID int64 `json:"id"`
	}
	s.API(tb, http.MethodPost, "/admin/users", map[string]any{
		"username":             login,
		"password":             password,
		"email":                email,
		"must_change_password": false,
		"send_notify":          false,
	}, &u)
	return u.ID
}

// CreateOrg creates a public organisation owned by the administrator and
// returns its id.
func (s *Server) CreateOrg(tb testing.TB, name string) int64 {
	tb.Helper()
	var o struct {
		ID int64 `json:"id"`
	}
	s.API(tb, http.MethodPost, "/orgs", map[string]any{"username": name, "visibility": "public"}, &o)
	return o.ID
}

// AddOrgMember makes login a member of org through its team "members"
// (created on first use: read access to all the organisation's repositories).
func (s *Server) AddOrgMember(tb testing.TB, org, login string) {
	tb.Helper()
	s.API(tb, http.MethodPut, fmt.Sprintf("/teams/%d/members/%s", s.membersTeam(tb, org), url.PathEscape(login)), nil, nil)
}

func (s *Server) membersTeam(tb testing.TB, org string) int64 {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.teams[org]; ok {
		return id
	}
	var teams []struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	s.API(tb, http.MethodGet, "/orgs/"+url.PathEscape(org)+"/teams?limit=50", nil, &teams)
	for _, t := range teams {
		if t.Name == "members" {
			s.teams[org] = t.ID
			return t.ID
		}
	}
	var team struct {
		ID int64 `json:"id"`
	}
	s.API(tb, http.MethodPost, "/orgs/"+url.PathEscape(org)+"/teams", map[string]any{
		"name":                      "members",
		"permission":                "read",
		"includes_all_repositories": true,
		"units": []string{"repo.code", "repo.issues", "repo.pulls", "repo.releases",
			"repo.wiki", "repo.projects"},
	}, &team)
	s.teams[org] = team.ID
	return team.ID
}

// CreateOAuthApp registers a confidential OAuth2 application owned by the
// administrator and returns its client id and secret.
func (s *Server) CreateOAuthApp(tb testing.TB, name string, redirectURIs []string) (clientID, clientSecret string) {
	tb.Helper()
	var app struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	s.API(tb, http.MethodPost, "/user/applications/oauth2", map[string]any{
		"name":                name,
		"redirect_uris":       redirectURIs,
		"confidential_client": true,
	}, &app)
	if app.ClientID == "" || app.ClientSecret == "" {
		tb.Fatalf("gitea: OAuth2 application %q created without client id or secret", name)
	}
	return app.ClientID, app.ClientSecret
}

// Repo is a repository as Gitea's API describes it (the fields tests use).
type Repo struct {
	ID            int64  `json:"id"`
	Name          string `json:"name"`
	FullName      string `json:"full_name"`
	HTMLURL       string `json:"html_url"`
	CloneURL      string `json:"clone_url"`
	DefaultBranch string `json:"default_branch"`
	Private       bool   `json:"private"`
}

// CreateRepo creates a public repository of a user or an organisation, with
// an initial commit (a README) on its default branch.
func (s *Server) CreateRepo(tb testing.TB, owner, name string) *Repo {
	tb.Helper()
	opts := map[string]any{"name": name, "auto_init": true, "readme": "Default", "private": false}
	path := "/admin/users/" + url.PathEscape(owner) + "/repos"
	switch err := s.Do(http.MethodGet, "/orgs/"+url.PathEscape(owner), nil, nil); {
	case err == nil:
		path = "/orgs/" + url.PathEscape(owner) + "/repos"
	case owner == s.AdminUser:
		path = "/user/repos"
	}
	var r Repo
	s.API(tb, http.MethodPost, path, opts, &r)
	return &r
}

// Authorize plays the browser in an OAuth2 authorization: it requests authURL
// (Gitea's /login/oauth/authorize with the client's parameters), signs in as
// login on the form it is sent to, grants the application access when Gitea
// asks, and returns the URL Gitea finally redirects to (the application's
// redirect URI with code and state, or error), without requesting it. Each
// call starts with no cookies: a new browser session.
func (s *Server) Authorize(tb testing.TB, authURL, login, password string) *url.URL {
	tb.Helper()
	u, _, err := s.authorize(authURL, login, password, true)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// AuthorizeErr is Authorize returning its error (a wrong password, an
// unregistered client or redirect URI shown on Gitea's error page, …).
func (s *Server) AuthorizeErr(authURL, login, password string) (*url.URL, error) {
	u, _, err := s.authorize(authURL, login, password, true)
	return u, err
}

// AuthorizeDeny is Authorize pressing Cancel on the grant page: the returned
// URL carries error=access_denied. It fails the test when Gitea does not ask
// (the user granted this application access before).
func (s *Server) AuthorizeDeny(tb testing.TB, authURL, login, password string) *url.URL {
	tb.Helper()
	u, asked, err := s.authorize(authURL, login, password, false)
	if err != nil {
		tb.Fatal(err)
	}
	if !asked {
		tb.Fatalf("authorize: Gitea did not ask %q to grant access (granted before?); redirected to %s", login, u.Redacted())
	}
	return u
}

var (
	formRE  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	inputRE = regexp.MustCompile(`(?is)<(?:input|button)\b([^>]*)>`)
	attrRE  = regexp.MustCompile(`(?s)([a-zA-Z_:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')`)
	tagRE   = regexp.MustCompile(`(?s)<script\b.*?</script>|<style\b.*?</style>|<[^>]*>`)
	spaceRE = regexp.MustCompile(`\s+`)
)

type htmlForm struct {
	action, method string
	inputs         []map[string]string // attributes of each input and button
}

func parseForms(page string) []htmlForm {
	var forms []htmlForm
	for _, m := range formRE.FindAllStringSubmatch(page, -1) {
		attrs := parseAttrs(m[1])
		f := htmlForm{action: attrs["action"], method: strings.ToLower(attrs["method"])}
		for _, in := range inputRE.FindAllStringSubmatch(m[2], -1) {
			f.inputs = append(f.inputs, parseAttrs(in[1]))
		}
		forms = append(forms, f)
	}
	return forms
}

func parseAttrs(s string) map[string]string {
	attrs := map[string]string{}
	for _, a := range attrRE.FindAllStringSubmatch(s, -1) {
		v := a[2]
		if v == "" {
			v = a[3]
		}
		attrs[strings.ToLower(a[1])] = html.UnescapeString(v)
	}
	return attrs
}

// hidden returns the form's hidden fields (_csrf, client_id, state, …).
func (f htmlForm) hidden() url.Values {
	v := url.Values{}
	for _, in := range f.inputs {
		if strings.EqualFold(in["type"], "hidden") && in["name"] != "" {
			v.Add(in["name"], in["value"])
		}
	}
	return v
}

func (f htmlForm) has(name string) bool {
	for _, in := range f.inputs {
		if in["name"] == name {
			return true
		}
	}
	return false
}

// pageText is the visible text of a page's main part, for error messages.
func pageText(page string) string {
	if i := strings.Index(page, `role="main"`); i >= 0 {
		page = page[i:]
		if j := strings.IndexByte(page, '>'); j >= 0 {
			page = page[j+1:]
		}
	}
	text := strings.TrimSpace(spaceRE.ReplaceAllString(html.UnescapeString(tagRE.ReplaceAllString(page, " ")), " "))
	if len(text) > 300 {
		text = text[:300] + "…"
	}
	return text
}

// authorize returns the redirect out of Gitea, and whether Gitea showed the
// grant page.
func (s *Server) authorize(authURL, login, password string, grant bool) (_ *url.URL, asked bool, _ error) {
	base, err := url.Parse(s.URL)
	if err != nil {
		return nil, asked, err
	}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{
		Jar:     jar,
		Timeout: s.client.Timeout,
		// Redirects are followed below, only to Gitea's own pages.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	next, err := url.Parse(authURL)
	if err != nil {
		return nil, asked, err
	}
	method, form := http.MethodGet, url.Values(nil)
	signedIn := false
	for step := 0; step < 20; step++ {
		if next.Scheme != base.Scheme || next.Host != base.Host {
			if method == http.MethodGet && step > 0 {
				return next, asked, nil
			}
			return nil, asked, fmt.Errorf("authorize: %s is not on Gitea (%s)", next, s.URL)
		}
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, next.String(), body)
		if err != nil {
			return nil, asked, err
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, asked, fmt.Errorf("authorize: %w", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, asked, fmt.Errorf("authorize: %s %s: %w", method, next.Redacted(), err)
		}
		page := string(b)
		where := method + " " + next.Path

		if resp.StatusCode/100 == 3 {
			loc, err := resp.Location()
			if err != nil {
				return nil, asked, fmt.Errorf("authorize: %s: %s without Location", where, resp.Status)
			}
			next, method, form = loc, http.MethodGet, nil
			continue
		}
		if resp.StatusCode != http.StatusOK {
			return nil, asked, fmt.Errorf("authorize: %s: %s: %s", where, resp.Status, pageText(page))
		}

		var signIn, grantForm *htmlForm
		for _, f := range parseForms(page) {
			switch {
			case f.method == "post" && f.has("user_name") && f.has("password"):
				signIn = &f
			case f.method == "post" && strings.HasSuffix(f.action, "/login/oauth/grant"):
				grantForm = &f
			}
		}
		switch {
		case signIn != nil:
			if signedIn {
				return nil, asked, fmt.Errorf("authorize: signing in as %q failed: %s", login, pageText(page))
			}
			signedIn = true
			form = signIn.hidden()
			form.Set("user_name", login)
			form.Set("password", password)
			next, err = next.Parse(signIn.action)
			if err != nil {
				return nil, asked, err
			}
			method = http.MethodPost
		case grantForm != nil:
			if asked {
				return nil, asked, fmt.Errorf("authorize: Gitea asked twice to grant access: %s", pageText(page))
			}
			asked = true
			form = grantForm.hidden()
			form.Set("granted", strconv.FormatBool(grant))
			next, err = next.Parse(grantForm.action)
			if err != nil {
				return nil, asked, err
			}
			method = http.MethodPost
		default:
			return nil, asked, fmt.Errorf("authorize: %s: unexpected page: %s", where, pageText(page))
		}
	}
	return nil, asked, errors.New("authorize: too many steps")
}
