package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// credentials are the command line's sign-ins, by server URL, in
// $RUNNEL_CONFIG_DIR (default the user's config directory)/runnel/credentials.json,
// mode 0600.
type credentials struct {
	Servers map[string]credential `json:"servers"`
}

type credential struct {
	Token   string `json:"token"`
	TokenID string `json:"tokenId"`
	Login   string `json:"login"`
}

func credentialsPath() (string, error) {
	dir := os.Getenv("RUNNEL_CONFIG_DIR")
	if dir == "" {
		d, err := os.UserConfigDir()
		if err != nil {
			return "", fmt.Errorf("no config directory (set RUNNEL_CONFIG_DIR): %w", err)
		}
		dir = filepath.Join(d, "runnel")
	}
	return filepath.Join(dir, "credentials.json"), nil
}

func loadCredentials() (credentials, string, error) {
	c := credentials{Servers: map[string]credential{}}
	p, err := credentialsPath()
	if err != nil {
		return c, "", err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return c, p, nil
	}
	if err != nil {
		return c, p, err
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, p, fmt.Errorf("%s: %w", p, err)
	}
	if c.Servers == nil {
		c.Servers = map[string]credential{}
	}
	return c, p, nil
}

func (c credentials) save(p string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(c, "", "  ")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// serverURL normalises --server: a base URL without a trailing slash.
func serverURL(v string) (string, error) {
	u, err := url.Parse(strings.TrimRight(v, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return "", fmt.Errorf("--server: %q is not a server URL such as https://ci.example.com", v)
	}
	return u.Scheme + "://" + u.Host + strings.TrimRight(u.Path, "/"), nil
}

// cmdLogin signs the command line in: the user consents in the web UI
// (signed in as they are there, with a provider or a token), the browser
// brings a one-use code to a loopback listener, and the code with the
// PKCE verifier only this process holds becomes an API token, stored for
// the server. No token travels in a URL.
func cmdLogin(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", os.Getenv("RUNNEL_SERVER"), "the server's `URL`, e.g. https://ci.example.com (RUNNEL_SERVER)")
	noBrowser := fs.Bool("no-browser", false, "only print the page to open")
	timeout := fs.Duration("timeout", 5*time.Minute, "how `long` to wait for the consent")
	name := fs.String("name", "", "the API token's `name` (default: command line on <host>)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitInvalid
	}
	base, err := serverURL(*server)
	if err != nil {
		fmt.Fprintln(stderr, "runnel login:", err)
		return exitInvalid
	}
	if *name == "" {
		host, _ := os.Hostname()
		*name = "command line on " + host
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	verifier := base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(stderr, "runnel login: listen on loopback:", err)
		return exitFailed
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	codes := make(chan string, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := r.URL.Query().Get("code")
		if r.URL.Path != "/callback" || code == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "The command line is being signed in; you can close this tab.")
		select {
		case codes <- code:
		default:
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()

	page := fmt.Sprintf("%s/cli-login?port=%d&challenge=%s", base, port, challenge)
	fmt.Fprintf(stdout, "Open this page to sign in, and authorize the command line:\n\n  %s\n\n", page)
	if !*noBrowser {
		_ = exec.Command("xdg-open", page).Start()
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var code string
	select {
	case code = <-codes:
	case <-ctx.Done():
		fmt.Fprintf(stderr, "runnel login: no consent within %s\n", *timeout)
		return exitFailed
	}
	body, _ := json.Marshal(map[string]string{"code": code, "verifier": verifier, "name": *name})
	var tok struct {
		TokenID string `json:"tokenId"`
		Token   string `json:"token"`
	}
	if err := apiCall(ctx, base, "", http.MethodPost, "/api/v1/auth/cli/token", body, &tok); err != nil {
		fmt.Fprintln(stderr, "runnel login:", err)
		return exitFailed
	}
	var me struct {
		Subject string `json:"subject"`
	}
	if err := apiCall(ctx, base, tok.Token, http.MethodGet, "/api/v1/me", nil, &me); err != nil {
		fmt.Fprintln(stderr, "runnel login:", err)
		return exitFailed
	}
	creds, p, err := loadCredentials()
	if err == nil {
		creds.Servers[base] = credential{Token: tok.Token, TokenID: tok.TokenID, Login: me.Subject}
		err = creds.save(p)
	}
	if err != nil {
		fmt.Fprintln(stderr, "runnel login: store the sign-in:", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "Signed in to %s as %s (token %s, stored in %s).\n", base, me.Subject, tok.TokenID, p)
	return exitOK
}

// cmdWhoami says who the stored sign-in for a server is, as the server
// sees it now.
func cmdWhoami(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("whoami", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", os.Getenv("RUNNEL_SERVER"), "the server's `URL` (RUNNEL_SERVER; default: the only one signed in to)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitInvalid
	}
	creds, _, err := loadCredentials()
	if err != nil {
		fmt.Fprintln(stderr, "runnel whoami:", err)
		return exitFailed
	}
	base := *server
	if base == "" && len(creds.Servers) == 1 {
		for k := range creds.Servers {
			base = k
		}
	}
	if base != "" {
		if base, err = serverURL(base); err != nil {
			fmt.Fprintln(stderr, "runnel whoami:", err)
			return exitInvalid
		}
	}
	c, ok := creds.Servers[base]
	if !ok {
		fmt.Fprintln(stderr, "runnel whoami: not signed in to", cmpOr(base, "any server"), "(runnel login --server URL)")
		return exitFailed
	}
	var me struct {
		Subject  string `json:"subject"`
		Role     string `json:"role"`
		Projects []struct {
			ProjectID string `json:"projectId"`
			Role      string `json:"role"`
		} `json:"projects"`
	}
	if err := apiCall(context.Background(), base, c.Token, http.MethodGet, "/api/v1/me", nil, &me); err != nil {
		fmt.Fprintln(stderr, "runnel whoami:", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "%s (%s) on %s\n", me.Subject, me.Role, base)
	for _, p := range me.Projects {
		fmt.Fprintf(stdout, "  %s: %s\n", p.ProjectID, p.Role)
	}
	return exitOK
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// apiCall sends a request to the server's API and decodes the envelope's
// detail into out; an error envelope becomes an error with its message.
func apiCall(ctx context.Context, base, token, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: 30 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	var env struct {
		Code   int             `json:"code"`
		ErrMsg string          `json:"errMsg"`
		Detail json.RawMessage `json:"detail"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return fmt.Errorf("%s %s: %s: not Runnel's API (%v)", method, path, res.Status, err)
	}
	if env.Code != 0 {
		return fmt.Errorf("%s %s: %s", method, path, env.ErrMsg)
	}
	if out != nil && len(env.Detail) > 0 {
		return json.Unmarshal(env.Detail, out)
	}
	return nil
}
