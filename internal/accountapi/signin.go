package accountapi

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/signin"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wire"
)

// providerJSON is a sign-in provider. The sign-in page's list shows name,
// kind and displayName only; admins see the rest (never the secret).
type providerJSON struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"`
	DisplayName string `json:"displayName"`
	LoginURL    string `json:"loginUrl,omitempty"`
	// SignIn and Connect say what the provider serves: signing in,
	// connecting forge accounts (seed 001's OAuth application); ConnectURL
	// starts a connection.
	SignIn         bool     `json:"signIn"`
	Connect        bool     `json:"connect"`
	ConnectURL     string   `json:"connectUrl,omitempty"`
	URL            string   `json:"url,omitempty"`
	ClientID       string   `json:"clientId,omitempty"`
	Scopes         []string `json:"scopes,omitempty"`
	AllowedOrgs    []string `json:"allowedOrgs,omitempty"`
	AllowedDomains []string `json:"allowedDomains,omitempty"`
	CallbackURL    string   `json:"callbackUrl,omitempty"`
	CreatedAt      string   `json:"createdAt,omitempty"`
	UpdatedAt      string   `json:"updatedAt,omitempty"`
}

func (a *API) providerPath(name string) string {
	return "/api/v1/auth/providers/" + url.PathEscape(name)
}

func (a *API) toProviderJSON(r *http.Request, p *store.AuthProvider, full bool) providerJSON {
	j := providerJSON{Name: p.Name, Kind: p.Kind, DisplayName: p.DisplayName, SignIn: p.SignIn, Connect: p.Connect}
	if p.SignIn {
		j.LoginURL = a.providerPath(p.Name) + "/login"
	}
	if p.Connect {
		j.ConnectURL = a.providerPath(p.Name) + "/connect"
	}
	if j.DisplayName == "" {
		j.DisplayName = p.Name
	}
	if full {
		j.URL, j.ClientID, j.Scopes, j.AllowedOrgs, j.AllowedDomains = p.URL, p.ClientID, p.Scopes, p.AllowedOrgs, p.AllowedDomains
		j.CallbackURL = a.callbackURL(r, p.Name)
		j.CreatedAt, j.UpdatedAt = wire.Time(p.CreatedAt), wire.Time(p.UpdatedAt)
	}
	return j
}

// callbackURL is where the provider sends the browser back: the address
// to register in the OAuth application.
func (a *API) callbackURL(r *http.Request, name string) string {
	return apikit.ExternalBase(r, a.ExternalURL) + a.providerPath(name) + "/callback"
}

// providerBody is POST /api/v1/auth/providers and PUT …/{name}.
type providerBody struct {
	Name           string   `json:"name"`
	Kind           *string  `json:"kind"`
	DisplayName    *string  `json:"displayName"`
	URL            *string  `json:"url"`
	ClientID       *string  `json:"clientId"`
	ClientSecret   *string  `json:"clientSecret"`
	Scopes         []string `json:"scopes"`
	AllowedOrgs    []string `json:"allowedOrgs"`
	AllowedDomains []string `json:"allowedDomains"`
	SignIn         *bool    `json:"signIn"`
	Connect        *bool    `json:"connect"`
}

func (a *API) readProvider(r *http.Request, update bool) (signin.ProviderInput, error) {
	data, err := apikit.ReadBody(r, a.MaxBody)
	if err != nil {
		return signin.ProviderInput{}, err
	}
	var b providerBody
	opts := apikit.DecodeOptions{}
	if update {
		opts.Rejected = map[string]string{"name": "is the path's provider name and cannot change"}
	}
	present, err := apikit.Decode(data, &b, opts)
	if err != nil {
		return signin.ProviderInput{}, err
	}
	for _, f := range []struct {
		name string
		null bool
	}{{"kind", b.Kind == nil}, {"displayName", b.DisplayName == nil}, {"url", b.URL == nil}, {"clientId", b.ClientID == nil},
		{"clientSecret", b.ClientSecret == nil}, {"signIn", b.SignIn == nil}, {"connect", b.Connect == nil}} {
		if present[f.name] && f.null {
			return signin.ProviderInput{}, apikit.Errorf(http.StatusBadRequest, "body.%s: must not be null", f.name)
		}
	}
	in := signin.ProviderInput{Name: b.Name, Kind: b.Kind, DisplayName: b.DisplayName, URL: b.URL, ClientID: b.ClientID,
		ClientSecret: b.ClientSecret, Scopes: b.Scopes, AllowedOrgs: b.AllowedOrgs, AllowedDomains: b.AllowedDomains,
		ScopesSet: present["scopes"], AllowedOrgsSet: present["allowedOrgs"], AllowedDomainsSet: present["allowedDomains"],
		SignIn: b.SignIn, Connect: b.Connect}
	if update {
		in.Name = r.PathValue("name")
	}
	return in, nil
}

func (a *API) createProvider(w http.ResponseWriter, r *http.Request) error {
	in, err := a.readProvider(r, false)
	if err != nil {
		return err
	}
	p, err := a.SignIn.CreateProvider(r.Context(), in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", a.providerPath(p.Name))
	a.ok(w, http.StatusCreated, a.toProviderJSON(r, p, true))
	return nil
}

func (a *API) updateProvider(w http.ResponseWriter, r *http.Request) error {
	in, err := a.readProvider(r, true)
	if err != nil {
		return err
	}
	p, err := a.SignIn.UpdateProvider(r.Context(), in)
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, a.toProviderJSON(r, p, true))
	return nil
}

func (a *API) getProvider(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	p, err := a.SignIn.GetProvider(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, a.toProviderJSON(r, p, true))
	return nil
}

func (a *API) deleteProvider(w http.ResponseWriter, r *http.Request) error {
	if err := a.SignIn.DeleteProvider(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	a.ok(w, http.StatusOK, nil)
	return nil
}

// listProviders is public: the sign-in page offers the providers.
func (a *API) listProviders(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	list, err := a.SignIn.ListProviders(r.Context())
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, apikit.WholeList(list, func(p *store.AuthProvider) providerJSON { return a.toProviderJSON(r, p, false) }))
	return nil
}

// login sends the browser to the provider.
func (a *API) login(w http.ResponseWriter, r *http.Request) error {
	q, err := apikit.ParseQuery(r.URL.RawQuery, "returnTo")
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	to, err := a.SignIn.Begin(r.Context(), name, a.callbackURL(r, name), q.Str("returnTo"))
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	redirect(w, to)
	return nil
}

// connect sends the signed-in user's browser to the provider to connect
// their forge account.
func (a *API) connect(w http.ResponseWriter, r *http.Request) error {
	q, err := apikit.ParseQuery(r.URL.RawQuery, "returnTo")
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	to, err := a.SignIn.BeginConnect(r.Context(), name, a.callbackURL(r, name), q.Str("returnTo"))
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	redirect(w, to)
	return nil
}

// callback finishes a sign-in: the session cookie is set and the browser
// goes to the page it came from. A refusal goes to the sign-in page with
// the reason (never a token: the URL carries words only).
func (a *API) callback(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	w.Header().Set("Cache-Control", "no-store")
	f, err := a.SignIn.Finish(r.Context(), name, r.URL.Query(), a.callbackURL(r, name), a.meta(r))
	if err != nil {
		msg := apikit.DomainMsg(err)
		if msg == "" {
			msg = "the sign-in failed on the server; try again"
		}
		a.Log.InfoContext(r.Context(), "sign-in refused", "provider", name, "error", err)
		redirect(w, "/signin?error="+url.QueryEscape(msg))
		return nil
	}
	if c := f.Connected; c != nil {
		// A forge account was connected for the user who started the flow;
		// their browser session is untouched.
		p := apikit.Principal{Subject: c.CreatedBy, UserID: c.OwnerID}
		rt := apikit.Route{Method: r.Method, Path: "/api/v1/auth/providers/{name}/callback"}
		a.Record(r, rt, p, http.StatusCreated, "/api/v1/credentials/"+c.ID)
		to := f.ReturnTo
		if to == "" || to == "/" {
			to = "/credentials"
		}
		sep := "?"
		if strings.Contains(to, "?") {
			sep = "&"
		}
		redirect(w, to+sep+"connected="+url.QueryEscape(c.ID))
		return nil
	}
	a.setCookie(w, r, f.Cookie, f.Session.ExpiresAt)
	// The sign-in, and the user it created the first time, are in the
	// audit log under the user who signed in.
	p := apikit.Principal{Subject: f.User.Login, UserID: f.User.ID, TokenID: f.Session.ID}
	rt := apikit.Route{Method: r.Method, Path: "/api/v1/auth/providers/{name}/callback"}
	status := http.StatusFound
	if f.Created {
		status = http.StatusCreated
	}
	a.Record(r, rt, p, status, "/api/v1/users/"+f.User.ID)
	redirect(w, f.ReturnTo)
	return nil
}

// redirect answers 302 to a URL without a body.
func redirect(w http.ResponseWriter, to string) {
	w.Header().Set("Location", to)
	w.WriteHeader(http.StatusFound)
}

func (a *API) meta(r *http.Request) signin.Meta {
	addr := r.RemoteAddr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	return signin.Meta{UserAgent: r.UserAgent(), RemoteAddr: addr}
}

// setCookie sets the session cookie: HttpOnly (no page script reads it),
// SameSite=Lax (other sites' forms and scripts do not send it), Secure
// behind HTTPS.
func (a *API) setCookie(w http.ResponseWriter, r *http.Request, value string, expires time.Time) {
	secure := strings.HasPrefix(apikit.ExternalBase(r, a.ExternalURL), "https://")
	c := &http.Cookie{Name: signin.CookieName, Value: value, Path: "/", HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode}
	if value == "" {
		c.MaxAge = -1
	} else {
		// Max-Age, from the server's clock: a browser's clock may be off.
		c.MaxAge = max(1, int(expires.Sub(a.Now()).Seconds()))
	}
	http.SetCookie(w, c)
}

// openSession turns the caller's API token into a browser session (the web
// UI's sign-in with a token: the token is not kept by the page).
func (a *API) openSession(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength > 0 {
		if _, err := apikit.ReadBody(r, a.MaxBody); err != nil {
			return err
		}
	}
	p := apikit.PrincipalFrom(r.Context())
	if strings.HasPrefix(p.TokenID, "ses_") {
		return apikit.Errorf(http.StatusConflict, "this request already comes with a session")
	}
	if p.UserID == "" {
		return apikit.Errorf(http.StatusForbidden, "a session needs a user's token; this token belongs to no user")
	}
	u, err := a.Identity.GetUser(r.Context(), p, p.UserID)
	if err != nil {
		return err
	}
	var notAfter time.Time
	if t, err := a.Tokens.GetToken(r.Context(), p.TokenID); err == nil && t.ExpiresAt != nil {
		notAfter = *t.ExpiresAt
	}
	value, sess, err := a.SignIn.NewSession(r.Context(), u, "", a.meta(r), p.Scopes, notAfter)
	if err != nil {
		return err
	}
	a.setCookie(w, r, value, sess.ExpiresAt)
	a.ok(w, http.StatusOK, toSessionJSON(sess, sess.ID))
	return nil
}

// closeSession signs the caller's session out.
func (a *API) closeSession(w http.ResponseWriter, r *http.Request) error {
	p := apikit.PrincipalFrom(r.Context())
	if !strings.HasPrefix(p.TokenID, "ses_") {
		return apikit.Errorf(http.StatusBadRequest, "this request comes with an API token, not a session; revoke tokens with DELETE /api/v1/tokens/{tokenId}")
	}
	if err := a.SignIn.EndSession(r.Context(), p.TokenID); err != nil && !errors.Is(err, runnel.ErrNotFound) {
		return err
	}
	a.setCookie(w, r, "", time.Time{})
	a.ok(w, http.StatusOK, nil)
	return nil
}

// sessionJSON is a browser session (never its cookie).
type sessionJSON struct {
	SessionID  string   `json:"sessionId"`
	Provider   string   `json:"provider"`
	CreatedAt  string   `json:"createdAt"`
	ExpiresAt  string   `json:"expiresAt"`
	LastSeenAt string   `json:"lastSeenAt"`
	UserAgent  string   `json:"userAgent"`
	RemoteAddr string   `json:"remoteAddr"`
	Scopes     []string `json:"scopes"`
	Current    bool     `json:"current"`
}

func toSessionJSON(x *store.Session, current string) sessionJSON {
	scopes := x.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return sessionJSON{SessionID: x.ID, Provider: x.Provider, CreatedAt: wire.Time(x.CreatedAt), ExpiresAt: wire.Time(x.ExpiresAt),
		LastSeenAt: wire.Time(x.LastSeenAt), UserAgent: x.UserAgent, RemoteAddr: x.RemoteAddr, Scopes: scopes, Current: x.ID == current}
}

func (a *API) listSessions(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	p := apikit.PrincipalFrom(r.Context())
	list, err := a.SignIn.ListSessions(r.Context(), p.UserID)
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, apikit.WholeList(list, func(x *store.Session) sessionJSON { return toSessionJSON(x, p.TokenID) }))
	return nil
}

var sessionIDKind = apikit.IDKind{Param: "sessionId", Prefix: "ses_", Noun: "session"}

func (a *API) deleteSession(w http.ResponseWriter, r *http.Request) error {
	id, err := apikit.PathID(r, sessionIDKind)
	if err != nil {
		return err
	}
	if err := a.SignIn.EndSession(r.Context(), id); err != nil {
		return err
	}
	if id == apikit.PrincipalFrom(r.Context()).TokenID {
		a.setCookie(w, r, "", time.Time{})
	}
	a.ok(w, http.StatusOK, nil)
	return nil
}

// cliGrantBody is POST /api/v1/auth/cli/grant.
type cliGrantBody struct {
	Challenge string `json:"challenge"`
	Port      int    `json:"port"`
}

// grantCLI records the signed-in user's consent to `runnel login` (the web
// UI's /cli-login page sends it) and answers where the browser goes next:
// the command line's loopback address with a one-use code.
func (a *API) grantCLI(w http.ResponseWriter, r *http.Request) error {
	data, err := apikit.ReadBody(r, a.MaxBody)
	if err != nil {
		return err
	}
	var b cliGrantBody
	if _, err := apikit.Decode(data, &b, apikit.DecodeOptions{}); err != nil {
		return err
	}
	to, err := a.SignIn.GrantCLI(r.Context(), b.Challenge, b.Port)
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, map[string]string{"redirect": to})
	return nil
}

// cliTokenBody is POST /api/v1/auth/cli/token.
type cliTokenBody struct {
	Code     string `json:"code"`
	Verifier string `json:"verifier"`
	Name     string `json:"name"`
}

// cliToken is the command line's side: the code and the verifier for an
// API token (in the answer's body only).
func (a *API) cliToken(w http.ResponseWriter, r *http.Request) error {
	data, err := apikit.ReadBody(r, 4<<10)
	if err != nil {
		return err
	}
	var b cliTokenBody
	if _, err := apikit.Decode(data, &b, apikit.DecodeOptions{Optional: false}); err != nil {
		return err
	}
	t, value, err := a.SignIn.ExchangeCLI(r.Context(), b.Code, b.Verifier, b.Name)
	if err != nil {
		return err
	}
	j := toTokenJSON(t)
	j.Token = value
	w.Header().Set("Cache-Control", "no-store")
	a.ok(w, http.StatusCreated, j)
	return nil
}
