package wsgateway

import (
	"testing"
	"unicode/utf8"
)

// FuzzWSRequest: any client message is either accepted as a subscription the
// gateway can serve or refused with a message naming what was wrong; never a
// panic.
func FuzzWSRequest(f *testing.F) {
	for _, s := range []string{
		`{"action":"subscribe","channel":"status","params":{"runId":"run_x","fromSeq":3}}`,
		`{"action":"subscribe","channel":"logs","params":{"stepRunId":"sr_x"}}`,
		`{"action":"unsubscribe","channel":"logs","params":{}}`,
		`{"action":"subscribe","channel":"status","params":{"projectId":"demo"}}`,
		`{"action":"subscribe","channel":"status","params":{"stepRunId":"x"}}`,
		`{"action":"subscribe","channel":"nope"}`, `{"action":"\u0000"}`, `{"action":"subscribe"`, `[]`, `null`,
		`{"action":"subscribe","channel":"logs","params":{"stepRunId":"x","fromSeq":-1}}`, `{} {}`,
		`{"action":"subscribe","channel":"logs","params":{"stepRunId":"x","fromSeq":1e400}}`,
		`{"action":"subscribe","channel":"logs","params":{"stepRunId":"sr_x","fromSeq":2,"batch":true}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, msg := ParseRequest(b)
		if msg != "" {
			if !utf8.ValidString(msg) || len(msg) > 1000 {
				t.Fatalf("error message not fit to send: %q", msg)
			}
			return
		}
		if req.Channel != "status" && req.Channel != "logs" || req.Action != "subscribe" && req.Action != "unsubscribe" ||
			req.Params.FromSeq < 0 || req.Action == "subscribe" && req.Channel == "logs" && req.Params.StepRunID == "" {
			t.Fatalf("accepted %s as %+v", b, req)
		}
	})
}
