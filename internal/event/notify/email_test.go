package notify

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// received is one message a test SMTP server accepted.
type received struct {
	helo   string
	tls    bool
	authed string
	from   string
	to     []string
	data   []byte
}

// smtpBackend is a go-smtp backend that keeps what it receives.
type smtpBackend struct {
	rejectRcpt string // answered with 550
	user, pass string // accepted by AUTH PLAIN

	mu   sync.Mutex
	msgs []received
}

func (b *smtpBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	_, isTLS := c.TLSConnectionState()
	return &smtpSession{b: b, cur: received{helo: c.Hostname(), tls: isTLS}}, nil
}

func (b *smtpBackend) messages() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.msgs...)
}

type smtpSession struct {
	b   *smtpBackend
	cur received
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != s.b.user || password != s.b.pass {
			return smtp.ErrAuthFailed
		}
		s.cur.authed = username
		return nil
	}), nil
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.cur.from = from
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if to == s.b.rejectRcpt {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
	}
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = b
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, s.cur)
	s.b.mu.Unlock()
	return nil
}

func (s *smtpSession) Reset() {
	s.cur = received{helo: s.cur.helo, tls: s.cur.tls, authed: s.cur.authed}
}

func (s *smtpSession) Logout() error { return nil }

// startSMTP serves be on 127.0.0.1; with tlsCfg, STARTTLS is offered, or,
// when implicit, the listener itself is TLS.
func startSMTP(t *testing.T, be *smtpBackend, tlsCfg *tls.Config, implicit bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if implicit {
		l = tls.NewListener(l, tlsCfg)
	}
	s := smtp.NewServer(be)
	s.Domain = "mx.test"
	s.ReadTimeout = 10 * time.Second
	s.WriteTimeout = 10 * time.Second
	s.ErrorLog = log.New(io.Discard, "", 0)
	if !implicit {
		s.TLSConfig = tlsCfg
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(l)
	}()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	return l.Addr().String()
}

// testCert makes a self-signed certificate for 127.0.0.1 and the pool that
// trusts it.
func testCert(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

func TestMailerSend(t *testing.T) {
	be := &smtpBackend{}
	addr := startSMTP(t, be, nil, false)
	m := &Mailer{Addr: addr, From: "Runnel CI <ci@runnel.test>", Timeout: 10 * time.Second}
	msg := testMessage("https://ci.example.com/runs/run-1")
	subject := "Échec du build ✗ — " + strings.Repeat("long words ", 10)
	to := []string{"dev@example.com", "Ops Team <ops@example.com>"}
	if err := m.Send(context.Background(), to, subject, msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if err := m.Send(context.Background(), to[:1], "", msg); err != nil {
		t.Fatalf("second Send: %v", err)
	}
	other := msg
	other.DeliveryID = "dlv-0002"
	if err := m.Send(context.Background(), to[:1], "", other); err != nil {
		t.Fatalf("third Send: %v", err)
	}

	msgs := be.messages()
	if len(msgs) != 3 {
		t.Fatalf("received %d messages, want 3", len(msgs))
	}
	r := msgs[0]
	if r.helo != "localhost" {
		t.Errorf("HELO %q, want localhost", r.helo)
	}
	if r.from != "ci@runnel.test" {
		t.Errorf("MAIL FROM %q", r.from)
	}
	if strings.Join(r.to, ",") != "dev@example.com,ops@example.com" {
		t.Errorf("RCPT TO %q", r.to)
	}
	if strings.Contains(strings.ReplaceAll(string(r.data), "\r\n", ""), "\n") {
		t.Error("the message has a bare LF")
	}
	for _, line := range strings.Split(string(r.data), "\r\n") {
		if len(line) > 78 {
			t.Errorf("line longer than 78: %q", line)
		}
	}

	pm, err := mail.ReadMessage(strings.NewReader(string(r.data)))
	if err != nil {
		t.Fatalf("the message does not parse: %v\n%s", err, r.data)
	}
	h := pm.Header
	rawSubject := h.Get("Subject")
	if !strings.Contains(strings.ToLower(rawSubject), "=?utf-8?q?") {
		t.Errorf("subject %q is not RFC 2047 encoded", rawSubject)
	}
	var dec mime.WordDecoder
	if got, err := dec.DecodeHeader(rawSubject); err != nil || got != subject {
		t.Errorf("decoded subject %q (%v), want %q", got, err, subject)
	}
	if from, err := h.AddressList("From"); err != nil || len(from) != 1 || from[0].Name != "Runnel CI" || from[0].Address != "ci@runnel.test" {
		t.Errorf("From %q: %v %v", h.Get("From"), from, err)
	}
	if tos, err := h.AddressList("To"); err != nil || len(tos) != 2 || tos[1].Address != "ops@example.com" || tos[1].Name != "Ops Team" {
		t.Errorf("To %q: %v %v", h.Get("To"), tos, err)
	}
	if d, err := h.Date(); err != nil || time.Since(d) > time.Minute {
		t.Errorf("Date %q: %v", h.Get("Date"), err)
	}
	for k, want := range map[string]string{
		"Mime-Version":              "1.0",
		"Content-Type":              "text/plain; charset=utf-8",
		"Content-Transfer-Encoding": "quoted-printable",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	id := h.Get("Message-Id")
	if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@runnel.test>") {
		t.Errorf("Message-ID %q", id)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(pm.Body))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"build run #12 failed: a job failed",
		"https://ci.example.com/runs/run-1",
		"Failed jobs:",
		"Unit tests (stage check): exit 1 <script>&",
		"Branch:    main",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(string(body), "Lint") {
		t.Errorf("body lists a job that did not fail:\n%s", body)
	}

	// Same DeliveryID, same Message-ID; another, another.
	pm2, _ := mail.ReadMessage(strings.NewReader(string(msgs[1].data)))
	pm3, _ := mail.ReadMessage(strings.NewReader(string(msgs[2].data)))
	if got := pm2.Header.Get("Message-Id"); got != id {
		t.Errorf("retry Message-ID %q, want %q", got, id)
	}
	if got := pm3.Header.Get("Message-Id"); got == id {
		t.Errorf("another delivery has the same Message-ID %q", got)
	}
	if got := pm2.Header.Get("Subject"); got != "[build] run #12 failed" {
		t.Errorf("default subject %q", got)
	}
}

func TestMailerRejectsInjection(t *testing.T) {
	be := &smtpBackend{}
	addr := startSMTP(t, be, nil, false)
	m := &Mailer{Addr: addr, From: "ci@runnel.test"}
	msg := testMessage("")
	cases := []struct {
		name    string
		m       *Mailer
		to      []string
		subject string
	}{
		{"CRLF in subject", m, []string{"dev@example.com"}, "hi\r\nBcc: victim@example.com"},
		{"LF in subject", m, []string{"dev@example.com"}, "hi\nX-Evil: 1"},
		{"CR in subject", m, []string{"dev@example.com"}, "hi\rX-Evil: 1"},
		{"CRLF in recipient", m, []string{"dev@example.com\r\nBcc: victim@example.com"}, "s"},
		{"CRLF in recipient name", m, []string{"\"x\r\n\" <dev@example.com>"}, "s"},
		{"CRLF in sender", &Mailer{Addr: addr, From: "ci@runnel.test\r\nRCPT TO:<victim@example.com>"}, []string{"dev@example.com"}, "s"},
		{"CRLF in hostname", &Mailer{Addr: addr, From: "ci@runnel.test", Hostname: "h\r\nRCPT TO:<v@example.com>"}, []string{"dev@example.com"}, "s"},
		{"no recipient", m, nil, "s"},
		{"bad recipient", m, []string{"not an address"}, "s"},
	}
	for _, c := range cases {
		err := c.m.Send(context.Background(), c.to, c.subject, msg)
		if err == nil {
			t.Errorf("%s: Send succeeded", c.name)
			continue
		}
		if strings.Contains(c.name, "CR") && !strings.Contains(err.Error(), "line break") {
			t.Errorf("%s: error %q does not say why", c.name, err)
		}
	}
	if n := len(be.messages()); n != 0 {
		t.Errorf("%d messages were sent", n)
	}

	// A pipeline name with a line break cannot inject through the default
	// subject either.
	msg.Pipeline.Name = "evil\r\nBcc: victim@example.com"
	if err := m.Send(context.Background(), []string{"dev@example.com"}, "", msg); err != nil {
		t.Fatal(err)
	}
	got := be.messages()
	pm, err := mail.ReadMessage(strings.NewReader(string(got[0].data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pm.Header["Bcc"]; ok || len(got[0].to) != 1 {
		t.Errorf("header injected: %q", got[0].data)
	}
}

func TestMailerRcptRejected(t *testing.T) {
	be := &smtpBackend{rejectRcpt: "nobody@example.com"}
	addr := startSMTP(t, be, nil, false)
	m := &Mailer{Addr: addr, From: "ci@runnel.test"}
	err := m.Send(context.Background(), []string{"dev@example.com", "nobody@example.com"}, "s", testMessage(""))
	if err == nil {
		t.Fatal("Send succeeded though a recipient was refused")
	}
	t.Logf("error: %v", err)
	for _, want := range []string{addr, "550", "no such user here", "nobody@example.com"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if n := len(be.messages()); n != 0 {
		t.Errorf("%d messages were delivered", n)
	}
}

func TestMailerClosedPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	m := &Mailer{Addr: addr, From: "ci@runnel.test"}
	err = m.Send(context.Background(), []string{"dev@example.com"}, "s", testMessage(""))
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("err = %v, want an error naming %s", err, addr)
	}
}

// silentServer accepts connections and never says a word.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

func TestMailerContextTimeout(t *testing.T) {
	addr := silentServer(t)
	m := &Mailer{Addr: addr, From: "ci@runnel.test"}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := m.Send(ctx, []string{"dev@example.com"}, "s", testMessage(""))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}

	// Cancelling, rather than a deadline, stops it too.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	err = m.Send(ctx, []string{"dev@example.com"}, "s", testMessage(""))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}

	// And so does the Mailer's own Timeout.
	m.Timeout = 150 * time.Millisecond
	err = m.Send(context.Background(), []string{"dev@example.com"}, "s", testMessage(""))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestMailerSTARTTLSAuth(t *testing.T) {
	srvTLS, pool := testCert(t)
	be := &smtpBackend{user: "runnel", pass: "hunter2"}
	addr := startSMTP(t, be, srvTLS, false)
	m := &Mailer{
		Addr: addr, From: "ci@runnel.test", TLS: "starttls", Hostname: "runnel.test",
		Username: "runnel", Password: "hunter2",
		tlsConfig: &tls.Config{RootCAs: pool},
	}
	if err := m.Send(context.Background(), []string{"dev@example.com"}, "s", testMessage("")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := be.messages()
	if len(got) != 1 || !got[0].tls || got[0].authed != "runnel" || got[0].helo != "runnel.test" {
		t.Fatalf("received %+v, want one message over TLS, authenticated, HELO runnel.test", got)
	}

	// A wrong password is refused with the server's reply.
	m.Password = "wrong"
	err := m.Send(context.Background(), []string{"dev@example.com"}, "s", testMessage(""))
	if err == nil || !strings.Contains(err.Error(), "535") {
		t.Errorf("err = %v, want the 535 reply", err)
	}

	// Without the test CA, the certificate is not trusted.
	m.Password = "hunter2"
	m.tlsConfig = nil
	if err := m.Send(context.Background(), []string{"dev@example.com"}, "s", testMessage("")); err == nil {
		t.Error("Send succeeded with an untrusted certificate")
	}
}

func TestMailerSTARTTLSRequired(t *testing.T) {
	be := &smtpBackend{}
	addr := startSMTP(t, be, nil, false)
	m := &Mailer{Addr: addr, From: "ci@runnel.test", TLS: "starttls"}
	err := m.Send(context.Background(), []string{"dev@example.com"}, "s", testMessage(""))
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("err = %v, want STARTTLS required", err)
	}
	if len(be.messages()) != 0 {
		t.Error("sent in plain text")
	}
	m.TLS = "bogus"
	if err := m.Send(context.Background(), []string{"dev@example.com"}, "s", testMessage("")); err == nil {
		t.Error("unknown TLS mode accepted")
	}
}

func TestMailerImplicitTLS(t *testing.T) {
	srvTLS, pool := testCert(t)
	be := &smtpBackend{}
	addr := startSMTP(t, be, srvTLS, true)
	m := &Mailer{Addr: addr, From: "ci@runnel.test", TLS: "tls", tlsConfig: &tls.Config{RootCAs: pool}}
	if err := m.Send(context.Background(), []string{"dev@example.com"}, "s", testMessage("")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := be.messages(); len(got) != 1 || !got[0].tls {
		t.Fatalf("received %+v, want one message over TLS", got)
	}
}

// TestMailerDataRejected checks an error answered to the message itself,
// with a hand-written server, to see the exact reply quoted.
func TestMailerDataRejected(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		say := func(s string) { _, _ = io.WriteString(c, s+"\r\n") }
		say("220 mx.test ESMTP")
		inData := false
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			switch {
			case inData:
				if line == "." {
					inData = false
					say("554 5.7.1 message refused as spam")
				}
			case strings.HasPrefix(line, "EHLO"):
				say("250 mx.test")
			case line == "DATA":
				inData = true
				say("354 go ahead")
			case line == "QUIT":
				say("221 bye")
				return
			default:
				say("250 ok")
			}
		}
	}()
	m := &Mailer{Addr: l.Addr().String(), From: "ci@runnel.test"}
	err = m.Send(context.Background(), []string{"dev@example.com"}, "s", testMessage(""))
	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "554 5.7.1 message refused as spam") || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Fatalf("err = %v", err)
	}
}
