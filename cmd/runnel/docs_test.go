package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDocsAPIExamples runs the curl examples of docs/api.md, as written,
// with curl against a live server with a remote agent: every block in the
// page's order, capturing the ids its `export X=…  # the … from the answer`
// lines stand for. Each must succeed (an envelope with code 0, or a
// non-empty text answer), so the page cannot drift from the API.
func TestDocsAPIExamples(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("RUNNEL_TEST_ALL") != "" {
			t.Fatal("curl is needed: apt-get install curl")
		}
		t.Skip("no curl")
	}
	_ = curl
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	const token = "my-admin-token-123456" // the token the page starts its server with
	// No in-process agent: a remote one, as the page's agents section has
	// (its examples relabel, disable and delete it, which the in-process
	// agent refuses).
	srv := startServerProc(t, "docs", "", "--admin-token", token)
	env := map[string]string{}
	req, _ := http.NewRequest("POST", "http://"+srv.addr+"/api/v1/registration-tokens", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var reg struct {
		Detail struct {
			Token string `json:"token"`
		} `json:"detail"`
	}
	json.NewDecoder(resp.Body).Decode(&reg)
	resp.Body.Close()
	startAgentProc(t, "docs-agent", srv.grpcAddr, reg.Detail.Token, "pool=docs", t.TempDir())

	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	var commands [][]string // per block: its lines, continuations joined
	for _, b := range blocks {
		// A command goes on while a line ends with a backslash or a pipe, or a single
		// quote is open (a JSON body over several lines).
		var lines []string
		cur := ""
		for _, l := range strings.Split(b[1], "\n") {
			if cur == "" && strings.HasPrefix(strings.TrimSpace(l), "#") {
				lines = append(lines, l) // a comment: its quotes are prose
				continue
			}
			cur += l
			if strings.HasSuffix(l, "\\") || strings.HasSuffix(strings.TrimSpace(l), "|") || strings.Count(cur, "'")%2 == 1 {
				cur += "\n"
				continue
			}
			lines = append(lines, cur)
			cur = ""
		}
		commands = append(commands, lines)
	}
	exportRe := regexp.MustCompile(`^export (\w+)=(\S+)(?:\s+# (?:the|a|an) (\w+) from the (?:answer|tree|list))?`)
	fieldRe := func(field string) *regexp.Regexp { return regexp.MustCompile(`"` + field + `":"([^"]+)"`) }
	known := regexp.MustCompile(`\$(\w+)`)
	run := func(cmd string) []byte {
		t.Helper()
		c := exec.Command("bash", "-c", cmd)
		c.Env = os.Environ()
		for k, v := range env {
			c.Env = append(c.Env, k+"="+v)
		}
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("%s\n%v: %s", cmd, err, out)
		}
		if bytes.HasPrefix(bytes.TrimSpace(out), []byte("{")) {
			var envl struct {
				Code   int    `json:"code"`
				ErrMsg string `json:"errMsg"`
			}
			if err := json.Unmarshal(out, &envl); err != nil || envl.Code != 0 {
				t.Fatalf("%s\nanswered %s", cmd, out)
			}
		} else if len(bytes.TrimSpace(out)) == 0 {
			t.Fatalf("%s\nanswered nothing", cmd)
		}
		return out
	}
	walkthrough, ran, skipped := -1, 0, 0
	for i, lines := range commands {
		for _, l := range lines {
			if strings.Contains(l, "# 1. Create a pipeline.") {
				walkthrough = i
			}
		}
	}
	if walkthrough < 0 {
		t.Fatal("docs/api.md: the walkthrough block (# 1. Create a pipeline.) is gone")
	}
	// The blocks in the page's order, each command after the ones before it;
	// an id a block exports is taken from the answer before (in the
	// walkthrough it must be there; elsewhere, when it is not, as for an
	// agent the test does not start, the commands using it are skipped).
	unavailable := map[string]bool{}
	for i, lines := range commands {
		var last []byte
	next:
		for _, l := range lines {
			l = strings.TrimSpace(l)
			if m := exportRe.FindStringSubmatch(l); m != nil {
				switch {
				case m[3] != "":
					v := fieldRe(m[3]).FindSubmatch(last)
					switch {
					case v != nil:
						env[m[1]] = string(v[1])
					case i == walkthrough:
						t.Fatalf("%s: no %s in the answer before: %s", l, m[3], last)
					default:
						unavailable[m[1]] = true
					}
				case m[1] == "RUNNEL":
					env[m[1]] = strings.Replace(strings.Trim(m[2], `"`), "127.0.0.1:8080", srv.addr, 1)
				default:
					env[m[1]] = strings.Trim(strings.TrimPrefix(l, "export "+m[1]+"="), `"`)
				}
				continue
			}
			if !strings.HasPrefix(l, "curl ") || strings.Contains(l, "…") {
				continue
			}
			for _, v := range known.FindAllStringSubmatch(l, -1) {
				if _, ok := env[v[1]]; !ok || unavailable[v[1]] {
					if i == walkthrough {
						t.Fatalf("%s: $%s is not set by the walkthrough", l, v[1])
					}
					skipped++
					continue next
				}
			}
			if i == walkthrough && strings.Contains(l, "/logs") {
				// "Poll the run": the log is complete once the run is.
				deadline := time.Now().Add(30 * time.Second)
				for !bytes.Contains(run(`curl -s -H "$AUTH" $RUNNEL/pipelines/runs/$RUN`), []byte(`"status":"success"`)) {
					if time.Now().After(deadline) {
						t.Fatal("the walkthrough's run did not succeed within 30s")
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
			last = run(l)
			ran++
		}
		if i == walkthrough && !strings.Contains(string(last), "hello, runnel") {
			t.Fatalf("the walkthrough's last step shows %q, the page says hello, runnel", last)
		}
	}
	t.Logf("%d examples ran; %d skipped (a variable no earlier answer gave)", ran, skipped)
}
