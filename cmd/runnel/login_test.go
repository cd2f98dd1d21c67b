package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestLoginCommandLine: `runnel login` is consented to in the web UI (by a
// user signed in there) and stores an API token; `runnel whoami` uses it.
func TestLoginCommandLine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and Chromium")
	}
	_, c := startUIServer(t)
	cfg := t.TempDir()
	cmd := exec.Command(binary, "login", "--server", c.base, "--no-browser", "--timeout", "60s", "--name", "laptop")
	cmd.Env = append(os.Environ(), "RUNNEL_CONFIG_DIR="+cfg)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(out)
	var page string
	pageRe := regexp.MustCompile(`^\s+(http://\S+/cli-login\?port=\d+&challenge=[A-Za-z0-9_-]{43})$`)
	for page == "" && lines.Scan() {
		if m := pageRe.FindStringSubmatch(lines.Text()); m != nil {
			page = m[1]
		}
	}
	if page == "" {
		t.Fatal("runnel login printed no page to open")
	}

	b := newBrowser(t, c.base, 1280, 900)
	b.run("sign in to the UI", 20*time.Second, chromedp.Navigate(c.base+"/signin"), chromedp.WaitVisible(`#token`, chromedp.ByID),
		chromedp.SendKeys(`#token`, testToken, chromedp.ByID),
		chromedp.Click(`form.signin button[type=submit]`, chromedp.ByQuery),
		waitJS(`document.querySelector('.who .subject')?.textContent === 'admin'`))
	// Wait for the page's button first: a poll started while the new
	// document replaces the old one can lose its execution context.
	b.run("the consent page", 20*time.Second, chromedp.Navigate(page), chromedp.WaitVisible(`#cli-authorize`, chromedp.ByID),
		waitJS(`document.querySelector('main h1')?.textContent === 'Sign the command line in' && document.body.innerText.includes('as admin')`))
	// The click sends the browser to the command line's loopback address
	// (another origin: the tab is not followed further).
	b.run("authorize", 20*time.Second, clickJS(`#cli-authorize`))

	done := make(chan string, 1)
	go func() {
		rest, _ := io.ReadAll(out)
		done <- string(rest)
	}()
	var rest string
	select {
	case rest = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("runnel login did not finish after the consent")
	}
	if err := cmd.Wait(); err != nil || !strings.Contains(rest, "Signed in to "+c.base+" as admin") {
		t.Fatalf("runnel login: %v\n%s", err, rest)
	}
	st, err := os.Stat(filepath.Join(cfg, "credentials.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", st, err)
	}
	who := exec.Command(binary, "whoami")
	who.Env = append(os.Environ(), "RUNNEL_CONFIG_DIR="+cfg)
	wout, err := who.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(wout), "admin (admin) on "+c.base) {
		t.Fatalf("runnel whoami: %v: %s", err, wout)
	}
	// The token is listed as the user's, by the name given.
	var toks struct {
		Items []struct{ Name string } `json:"items"`
	}
	c.do("GET", "/api/v1/tokens", nil, &toks)
	found := false
	for _, tk := range toks.Items {
		found = found || tk.Name == "laptop"
	}
	if !found {
		t.Fatalf("the command line's token is not listed: %+v", toks)
	}
}
