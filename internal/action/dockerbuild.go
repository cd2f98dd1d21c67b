package action

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/workspace"
)

const (
	dockerBuildUses = "actions/docker-build@v1"
	// injectedDockerfile is the name under which a Dockerfile from outside
	// the build context is added to the context sent to the engine. A file of
	// that name in the context itself is left out.
	injectedDockerfile = ".runnel-dockerfile"
	// maxDockerfileSize bounds a Dockerfile read from outside the context:
	// it is held in memory.
	maxDockerfileSize = 4 << 20
	// dockerHubAuthKey is the key the engine looks up Docker Hub logins by.
	dockerHubAuthKey = "https://index.docker.io/v1/"
)

// DockerBuild is actions/docker-build@v1: it builds an image with the Docker
// engine the agent is configured with (the engine's classic builder, through
// its API: no docker CLI is needed) from a directory of the workspace, tags it
// and optionally pushes the tags to a registry.
//
// It is a Native action: the agent streams the build context from the
// workspace to the engine, so it works the same whether the workspace is a
// host directory or a Docker volume. The context honours the .dockerignore at
// its root, as `docker build` does.
type DockerBuild struct{}

// Info implements Action.
func (DockerBuild) Info() spec.ActionInfo {
	return spec.ActionInfo{
		Uses:          dockerBuildUses,
		Description:   "Builds a container image with the agent's Docker engine and optionally pushes it to a registry. Sets the outputs `imageId`, `digest` and `tags`.",
		Actions:       []string{"build"},
		DefaultAction: "build",
		Inputs: []spec.ActionInput{
			{Name: "tags", Required: true, Description: "Image references to tag the image with (NAME[:TAG], lower case; :latest when no tag): a list, or one string of references separated by spaces or commas."},
			{Name: "context", Description: "Directory of the workspace sent to the engine as the build context; its .dockerignore is honoured.", Default: "the workspace root (.)"},
			{Name: "dockerfile", Description: "Path of the Dockerfile, relative to the workspace; it may lie outside the context.", Default: "Dockerfile in the context"},
			{Name: "buildArgs", Description: "Build arguments (ARG), a map of names to string values."},
			{Name: "labels", Description: "Labels to set on the image, a map of names to string values."},
			{Name: "target", Description: "Stage of a multi-stage Dockerfile to build.", Default: "the last stage"},
			{Name: "cache", Description: "Reuse the engine's layer cache; false rebuilds every step.", Default: "true"},
			{Name: "pull", Description: "Always try to pull a newer version of the base images.", Default: "false"},
			{Name: "push", Description: "Push every tag to its registry after the build.", Default: "false"},
			{Name: "registry", Description: "Registry host[:port] prefixed to the tags that name none, e.g. registry.example.com or 127.0.0.1:5000.", Default: "none (such tags are Docker Hub's)"},
			{Name: "credential", Description: "Id of a credential (/api/v1/credentials) whose username and secret log in to the registry, for pushing and for pulling base images. A credential with a host is refused for tags on another registry.", Default: "none (anonymous)"},
		},
	}
}

// Prepare implements Action: a native action has no script.
func (DockerBuild) Prepare(Call) (Exec, error) {
	return Exec{}, fmt.Errorf("%s runs natively in the agent (it drives the Docker engine); it has no script to prepare", dockerBuildUses)
}

// dockerBuildPlan is a checked call of actions/docker-build@v1.
type dockerBuildPlan struct {
	context    string // workspace-relative directory, "." for the root
	dockerfile string // workspace-relative path
	// inContext is the Dockerfile's path relative to the context; "" when
	// it lies outside.
	inContext string
	tags      []string // normalised, tagged references
	tagHosts  []string // registry host of each tag
	hosts     []string // registry hosts of tags, distinct, in order
	buildArgs map[string]*string
	labels    map[string]string
	target    string
	noCache   bool
	pull      bool
	push      bool
	// login is the credential's user name and secret; nil without one.
	login *registry.AuthConfig
	// authHosts are the registries login is given to: those of the tags
	// when pushing, else the credential's.
	authHosts []string
	credID    string
}

// plan checks the call's arguments; every error names the argument.
func (d DockerBuild) plan(call Call) (*dockerBuildPlan, error) {
	a, err := checkCall(d.Info(), call)
	if err != nil {
		return nil, err
	}
	p := &dockerBuildPlan{}

	ctxDir, err := a.str("context", ".")
	if err != nil {
		return nil, err
	}
	if p.context, err = dockerPathArg("context", ctxDir); err != nil {
		return nil, err
	}
	defaultDockerfile := path.Join(p.context, "Dockerfile")
	df, err := a.str("dockerfile", defaultDockerfile)
	if err != nil {
		return nil, err
	}
	if p.dockerfile, err = dockerPathArg("dockerfile", df); err != nil {
		return nil, err
	}
	if p.dockerfile == "." {
		return nil, fmt.Errorf("args.dockerfile: must be the path of a file relative to the workspace, got %q", df)
	}
	switch {
	case p.context == ".":
		p.inContext = p.dockerfile
	case strings.HasPrefix(p.dockerfile, p.context+"/"):
		p.inContext = strings.TrimPrefix(p.dockerfile, p.context+"/")
	}

	reg, err := a.str("registry", "")
	if err != nil {
		return nil, err
	}
	if reg != "" {
		if err := checkRegistryHost(reg); err != nil {
			return nil, err
		}
	}
	if p.tags, p.tagHosts, p.hosts, err = dockerTags(a, reg); err != nil {
		return nil, err
	}

	if p.buildArgs, err = dockerStringMap(a, "buildArgs", func(k string) bool {
		return !strings.ContainsFunc(k, func(r rune) bool { return r == '=' || unicode.IsSpace(r) })
	}, "a build argument name (no spaces or '=')"); err != nil {
		return nil, err
	}
	labels, err := dockerStringMap(a, "labels", func(k string) bool {
		return !strings.ContainsFunc(k, unicode.IsControl)
	}, "a label name")
	if err != nil {
		return nil, err
	}
	if len(labels) > 0 {
		p.labels = make(map[string]string, len(labels))
		for k, v := range labels {
			p.labels[k] = *v
		}
	}
	if p.target, err = a.str("target", ""); err != nil {
		return nil, err
	}
	if strings.HasPrefix(p.target, "-") || strings.ContainsFunc(p.target, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return nil, fmt.Errorf("args.target: must be the name of a stage of the Dockerfile (FROM … AS NAME), got %q", p.target)
	}
	cache, err := dockerBool(a, "cache", true)
	if err != nil {
		return nil, err
	}
	p.noCache = !cache
	if p.pull, err = dockerBool(a, "pull", false); err != nil {
		return nil, err
	}
	if p.push, err = dockerBool(a, "push", false); err != nil {
		return nil, err
	}

	credID, err := a.str("credential", "")
	if err != nil {
		return nil, err
	}
	if credID != "" {
		if err := p.useCredential(call, credID, reg); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// useCredential turns the credential into the registry login, refusing to
// send it to a registry it is not for.
func (p *dockerBuildPlan) useCredential(call Call, id, reg string) error {
	c, ok := call.Credentials[id]
	if !ok {
		return fmt.Errorf("args.credential: %q is not a credential this job may use (unknown, deleted, or limited to another project)", id)
	}
	if c.Kind == "ssh" {
		return fmt.Errorf("args.credential: credential %s is an SSH key; a registry login needs a username and a password or token", id)
	}
	several := fmt.Errorf("args.credential: credential %s names no host and the tags are on several registries (%s); give the credential a host or use tags on one registry", id, strings.Join(p.hosts, ", "))
	switch {
	case p.push:
		for i, h := range p.tagHosts {
			if c.Host != "" && !sameRegistry(h, c.Host) {
				return fmt.Errorf("args.credential: credential %s is for %s, but tag %s would be pushed to %s; use a credential for %s or tags on %s", id, c.Host, p.tags[i], h, h, c.Host)
			}
		}
		if c.Host == "" && len(p.hosts) > 1 {
			return several
		}
		p.authHosts = p.hosts
	case c.Host != "":
		p.authHosts = []string{registryDomain(c.Host)}
	case reg != "":
		p.authHosts = []string{reg}
	case len(p.hosts) == 1:
		p.authHosts = p.hosts
	default:
		return several
	}
	p.credID = id
	p.login = &registry.AuthConfig{Username: c.Username, Password: c.Secret}
	return nil
}

// authConfig is the login for one registry host; anonymous without a
// credential.
func (p *dockerBuildPlan) authConfig(host string) registry.AuthConfig {
	if p.login == nil {
		return registry.AuthConfig{}
	}
	a := *p.login
	a.ServerAddress = serverAddress(host)
	return a
}

// serverAddress is the name the engine knows a registry's logins by.
func serverAddress(host string) string {
	if registryDomain(host) == "docker.io" {
		return dockerHubAuthKey
	}
	return host
}

// dockerPathArg checks a workspace-relative path argument.
func dockerPathArg(name, p string) (string, error) {
	if strings.ContainsFunc(p, unicode.IsControl) {
		return "", fmt.Errorf("args.%s: must be a path relative to the workspace, got %q", name, p)
	}
	c, err := workspace.Clean(p)
	if err != nil {
		return "", fmt.Errorf("args.%s: must be a path relative to the workspace that stays inside it, got %q", name, p)
	}
	return c, nil
}

// checkRegistryHost accepts what Docker takes for a registry in a
// reference: a host with a dot or a port, or localhost.
func checkRegistryHost(reg string) error {
	bad := fmt.Errorf("args.registry: must be a registry host[:port] without scheme or path, such as registry.example.com or 127.0.0.1:5000, got %q", reg)
	if strings.Contains(reg, "/") || !hasRegistryHost(reg+"/x") {
		return bad
	}
	n, err := reference.ParseNormalizedNamed(reg + "/x")
	if err != nil || reference.Domain(n) != reg {
		return bad
	}
	return nil
}

// hasRegistryHost tells whether a reference starts with a registry host,
// by the rule Docker applies: a first path component with a dot, a colon or
// an upper-case letter, or "localhost".
func hasRegistryHost(ref string) bool {
	i := strings.IndexByte(ref, '/')
	if i < 0 {
		return false
	}
	first := ref[:i]
	return strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first
}

// dockerTags reads args.tags: references normalised (registry host, library/
// for Docker Hub, :latest), without duplicates, and their registry hosts.
func dockerTags(a args, reg string) (tags, tagHosts, hosts []string, err error) {
	items, err := a.stringList("tags", nil)
	if err != nil {
		return nil, nil, nil, err
	}
	var raw []string
	for _, it := range items {
		for s := range strings.SplitSeq(it, ",") {
			if s = strings.TrimSpace(s); s != "" {
				raw = append(raw, s)
			}
		}
	}
	if len(raw) == 0 {
		return nil, nil, nil, errors.New("args.tags: needs at least one image reference, such as registry.example.com/team/app:1.0")
	}
	seen := map[string]bool{}
	seenHost := map[string]bool{}
	for i, s := range raw {
		ref := s
		if reg != "" && !hasRegistryHost(ref) {
			ref = reg + "/" + ref
		}
		n, err := reference.ParseNormalizedNamed(ref)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("args.tags[%d]: %q is not a valid image reference (NAME[:TAG], lower case, such as registry.example.com/team/app:1.0): %v", i, s, err)
		}
		if _, ok := n.(reference.Digested); ok {
			return nil, nil, nil, fmt.Errorf("args.tags[%d]: %q has a digest; a tag is NAME[:TAG] (the digest of a pushed image is the output digest)", i, s)
		}
		n = reference.TagNameOnly(n)
		if seen[n.String()] {
			continue
		}
		seen[n.String()] = true
		h := reference.Domain(n)
		tags = append(tags, n.String())
		tagHosts = append(tagHosts, h)
		if !seenHost[h] {
			seenHost[h] = true
			hosts = append(hosts, h)
		}
	}
	return tags, tagHosts, hosts, nil
}

// registryDomain maps the names of Docker Hub to the one references use.
func registryDomain(h string) string {
	switch strings.ToLower(h) {
	case "docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", "hub.docker.com":
		return "docker.io"
	}
	return h
}

func sameRegistry(a, b string) bool {
	return sameHost(registryDomain(a), registryDomain(b))
}

// dockerBool reads a boolean argument, given as a boolean or as "true" or
// "false" (expressions evaluate to strings).
func dockerBool(a args, name string, def bool) (bool, error) {
	v, ok := a.values[name]
	if !ok || v == nil {
		return def, nil
	}
	switch b := v.(type) {
	case bool:
		return b, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(b)) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, fmt.Errorf("args.%s: must be true or false, got %s", name, describe(v))
}

// dockerStringMap reads a map of names to strings; nil when absent. Numbers
// and booleans are refused, as by args.str: YAML reads `version: 1.10` as 1.1.
func dockerStringMap(a args, name string, validKey func(string) bool, keyWhat string) (map[string]*string, error) {
	v, ok := a.values[name]
	if !ok || v == nil {
		return nil, nil
	}
	if m, ok := v.(map[string]string); ok {
		c := make(map[string]any, len(m))
		for k, s := range m {
			c[k] = s
		}
		v = c
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("args.%s: must be a map of names to strings, got %s", name, describe(v))
	}
	out := make(map[string]*string, len(m))
	for k, e := range m {
		if k == "" || !validKey(k) {
			return nil, fmt.Errorf("args.%s: %q is not %s", name, k, keyWhat)
		}
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("args.%s.%s: must be a string (quote it in YAML), got %s", name, k, describe(e))
		}
		out[k] = &s
	}
	return out, nil
}

// Run implements Native.
func (d DockerBuild) Run(ctx context.Context, call Call, rt *Runtime) (map[string]string, error) {
	p, err := d.plan(call)
	if err != nil {
		return nil, err
	}
	if rt == nil || rt.Docker == nil {
		return nil, fmt.Errorf("%s needs a Docker engine: the agent has none configured", dockerBuildUses)
	}
	if rt.Workspace == nil {
		return nil, fmt.Errorf("%s needs the job's workspace: the agent lent none", dockerBuildUses)
	}
	logf := func(string) {}
	if rt.Log != nil {
		logf = rt.Log
	}
	cli, err := rt.Docker()
	if err != nil {
		return nil, fmt.Errorf("%s: connect to the Docker engine: %w", dockerBuildUses, err)
	}

	if p.push && p.login != nil {
		// The engine retries a refused upload for a minute; a login says
		// at once whether the credential is good.
		for _, h := range p.authHosts {
			a := p.authConfig(h)
			if _, err := cli.RegistryLogin(ctx, client.RegistryLoginOptions{Username: a.Username, Password: a.Password, ServerAddress: a.ServerAddress}); err != nil {
				return nil, fmt.Errorf("args.credential: logging in to %s with credential %s failed: %w", h, p.credID, err)
			}
		}
	}
	imageID, err := p.build(ctx, cli, rt.Workspace, logf)
	if err != nil {
		return nil, err
	}
	out := map[string]string{"imageId": imageID, "digest": "", "tags": strings.Join(p.tags, ",")}
	if !p.push {
		return out, nil
	}
	for i, tag := range p.tags {
		// The engine expects the header even for anonymous pushes.
		encoded, err := authconfig.Encode(p.authConfig(p.tagHosts[i]))
		if err != nil {
			return nil, fmt.Errorf("encode the registry login: %w", err)
		}
		dg, err := dockerPushTag(ctx, cli, tag, encoded, logf)
		if err != nil {
			if p.login == nil && looksUnauthorized(err) {
				return nil, fmt.Errorf("%w (the registry wants a login: set args.credential)", err)
			}
			return nil, err
		}
		switch {
		case out["digest"] == "":
			out["digest"] = dg
		case out["digest"] != dg:
			logf(fmt.Sprintf("%s: %s has digest %s, not %s like the first tag (the output digest)", dockerBuildUses, tag, dg, out["digest"]))
		}
	}
	return out, nil
}

// looksUnauthorized tells whether a registry refused a request for want of
// (good) credentials.
func looksUnauthorized(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "unauthorized") || strings.Contains(s, "authentication required") || strings.Contains(s, "denied")
}

// build sends the context to the engine and follows the build; it returns
// the image ID.
func (p *dockerBuildPlan) build(ctx context.Context, cli *client.Client, ws Workspace, logf func(string)) (string, error) {
	var dockerfile []byte
	dfName := p.inContext
	if p.inContext == "" {
		var err error
		if dockerfile, err = dockerReadFile(ctx, ws, p.dockerfile, maxDockerfileSize); err != nil {
			return "", fmt.Errorf("args.dockerfile: %w", err)
		}
		dfName = injectedDockerfile
	}
	var ignore *patternmatcher.PatternMatcher
	di, err := dockerReadFile(ctx, ws, path.Join(p.context, ".dockerignore"), 1<<20)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", fmt.Errorf("args.context: %w", err)
	default:
		if di == nil {
			di = []byte{} // present but empty
		}
		patterns, err := ignorefile.ReadAll(bytes.NewReader(di))
		if err == nil {
			ignore, err = patternmatcher.New(patterns)
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", path.Join(p.context, ".dockerignore"), err)
		}
	}

	src, err := ws.Archive(ctx, p.context)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("args.context: directory %q does not exist in the workspace", p.context)
	}
	if err != nil {
		return "", fmt.Errorf("args.context: %w", err)
	}
	defer src.Close()

	logf(fmt.Sprintf("%s: building %s from %s (context %s)", dockerBuildUses, strings.Join(p.tags, ", "), p.dockerfile, p.context))
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := p.streamContext(ctx, src, pw, ignore, di, dockerfile)
		pw.CloseWithError(err)
		done <- err
	}()
	// finish stops the context stream and says why it failed, if it did on
	// its own (not because the engine stopped reading).
	finish := func() error {
		pr.Close()
		src.Close()
		if err := <-done; err != nil && !errors.Is(err, io.ErrClosedPipe) && ctx.Err() == nil {
			return err
		}
		return nil
	}

	opts := client.ImageBuildOptions{
		Tags:        p.tags,
		Dockerfile:  dfName,
		NoCache:     p.noCache,
		PullParent:  p.pull,
		Remove:      true,
		ForceRemove: true,
		BuildArgs:   p.buildArgs,
		Labels:      p.labels,
		Target:      p.target,
		// The classic builder: BuildKit through the API needs a session.
		Version: build.BuilderV1,
	}
	if p.login != nil {
		opts.AuthConfigs = map[string]registry.AuthConfig{}
		for _, h := range p.authHosts {
			opts.AuthConfigs[serverAddress(h)] = p.authConfig(h)
		}
	}
	res, err := cli.ImageBuild(ctx, pr, opts)
	if err != nil {
		if serr := finish(); serr != nil {
			return "", serr
		}
		return "", fmt.Errorf("docker build: %w", err)
	}
	var imageID string
	err = followEngineStream(ctx, res.Body, logf, func(aux json.RawMessage) {
		var r build.Result
		if json.Unmarshal(aux, &r) == nil && r.ID != "" {
			imageID = r.ID
		}
	})
	res.Body.Close()
	if serr := finish(); serr != nil {
		return "", serr
	}
	if err != nil {
		return "", fmt.Errorf("docker build: %w", err)
	}
	if imageID == "" {
		// Engines before API 1.30 say the ID only in text; the first tag
		// names the image just built.
		ins, err := cli.ImageInspect(ctx, p.tags[0])
		if err != nil {
			return "", fmt.Errorf("docker build: find the built image: %w", err)
		}
		imageID = ins.ID
	}
	logf(fmt.Sprintf("%s: built %s", dockerBuildUses, imageID))
	return imageID, nil
}

// streamContext copies the context's tar stream to w, leaving out what
// .dockerignore excludes (never the Dockerfile or .dockerignore itself, as
// docker build) and adding dockerfile, when not nil, as injectedDockerfile.
// Like docker build, it then lists that name in the .dockerignore it sends
// (dockerignore, the context's own, nil when it has none, plus that line), so
// that the engine leaves the file out of the context the Dockerfile sees.
func (p *dockerBuildPlan) streamContext(ctx context.Context, src io.Reader, w io.Writer, ignore *patternmatcher.PatternMatcher, dockerignore, dockerfile []byte) error {
	tr := tar.NewReader(src)
	tw := tar.NewWriter(w)
	found := dockerfile != nil
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("args.context: read %s from the workspace: %w", p.context, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if dockerfile != nil && (name == injectedDockerfile || name == ".dockerignore" && h.Typeflag != tar.TypeDir) {
			continue
		}
		if dockerfile == nil && name == p.inContext {
			if h.Typeflag == tar.TypeDir {
				return fmt.Errorf("args.dockerfile: %q is a directory, not a Dockerfile", p.dockerfile)
			}
			found = true
		} else if ignore != nil && name != ".dockerignore" {
			skip, err := ignore.MatchesOrParentMatches(name)
			if err != nil {
				return fmt.Errorf("%s: %w", path.Join(p.context, ".dockerignore"), err)
			}
			if skip {
				continue
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	if !found {
		return fmt.Errorf("args.dockerfile: %q not found in the workspace", p.dockerfile)
	}
	if dockerfile != nil {
		ignoreFile := ".dockerignore\n" + injectedDockerfile + "\n"
		if dockerignore != nil {
			ignoreFile = string(dockerignore) + "\n" + injectedDockerfile + "\n"
		}
		for _, f := range []struct {
			name    string
			content []byte
		}{{injectedDockerfile, dockerfile}, {".dockerignore", []byte(ignoreFile)}} {
			h := &tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.content)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := tw.Write(f.content); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// dockerReadFile reads one regular file of the workspace, of at most
// limit bytes. A missing file is an error wrapping fs.ErrNotExist.
func dockerReadFile(ctx context.Context, ws Workspace, file string, limit int64) ([]byte, error) {
	dir, base := path.Split(file)
	rc, err := ws.Archive(ctx, dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, notInWorkspace(file)
		}
		return nil, fmt.Errorf("read %q: %w", file, err)
	}
	// Closing early stops the archive: the entry is usually among the first.
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, notInWorkspace(file)
		}
		if err != nil {
			return nil, fmt.Errorf("read %q: %w", file, err)
		}
		if path.Clean(strings.TrimPrefix(h.Name, "./")) != base {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%q is not a regular file", file)
		}
		if h.Size > limit {
			return nil, fmt.Errorf("%q is larger than %d bytes", file, limit)
		}
		b, err := io.ReadAll(io.LimitReader(tr, limit))
		if err != nil {
			return nil, fmt.Errorf("read %q: %w", file, err)
		}
		return b, nil
	}
}

// notInWorkspace says a file is missing; it is an fs.ErrNotExist.
type notInWorkspace string

func (f notInWorkspace) Error() string {
	return fmt.Sprintf("%q not found in the workspace", string(f))
}
func (notInWorkspace) Is(target error) bool { return target == fs.ErrNotExist }

// pushDigest finds the manifest digest in a push's status text
// ("1: digest: sha256:… size: 528").
var pushDigest = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`digest: (sha256:[0-9a-f]{64})`) })

// dockerPushTag pushes one tag and returns the digest of its manifest.
func dockerPushTag(ctx context.Context, cli *client.Client, tag, auth string, logf func(string)) (string, error) {
	logf(fmt.Sprintf("%s: pushing %s", dockerBuildUses, tag))
	resp, err := cli.ImagePush(ctx, tag, client.ImagePushOptions{RegistryAuth: auth})
	if err != nil {
		return "", fmt.Errorf("push %s: %w", tag, err)
	}
	var digest string
	err = followEngineStream(ctx, resp, func(line string) {
		if m := pushDigest().FindStringSubmatch(line); m != nil && digest == "" {
			digest = m[1]
		}
		logf(line)
	}, func(aux json.RawMessage) {
		var r struct{ Tag, Digest string }
		if json.Unmarshal(aux, &r) == nil && r.Digest != "" {
			digest = r.Digest
		}
	})
	resp.Close()
	if err != nil {
		return "", fmt.Errorf("push %s: %w", tag, err)
	}
	if digest == "" {
		return "", fmt.Errorf("push %s: the Docker engine reported no manifest digest", tag)
	}
	logf(fmt.Sprintf("%s: pushed %s@%s", dockerBuildUses, tag, digest))
	return digest, nil
}

// engineMessage is one object of the engine's JSON message stream (build,
// pull, push). Error is the older form of ErrorDetail.
type engineMessage struct {
	Stream      string               `json:"stream"`
	Status      string               `json:"status"`
	ID          string               `json:"id"`
	Progress    *jsonstream.Progress `json:"progressDetail"`
	ErrorDetail *jsonstream.Error    `json:"errorDetail"`
	Error       string               `json:"error"`
	Aux         json.RawMessage      `json:"aux"`
}

// followEngineStream reads a JSON message stream to its end: build output and
// status lines go to logf line by line (progress updates are left out), aux
// objects to aux. An error message in the stream is returned as the error.
func followEngineStream(ctx context.Context, r io.Reader, logf func(string), aux func(json.RawMessage)) error {
	var pending strings.Builder
	flush := func(all bool) {
		s := pending.String()
		for {
			i := strings.IndexByte(s, '\n')
			if i < 0 {
				break
			}
			if line := strings.TrimRight(s[:i], "\r"); line != "" {
				logf(line)
			}
			s = s[i+1:]
		}
		pending.Reset()
		if all {
			if line := strings.TrimRight(s, "\r"); line != "" {
				logf(line)
			}
		} else {
			pending.WriteString(s)
		}
	}
	defer flush(true)
	dec := json.NewDecoder(r)
	for {
		var m engineMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read the Docker engine's output: %w", err)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return errors.New(strings.TrimSpace(m.ErrorDetail.Message))
		}
		if m.Error != "" {
			return errors.New(strings.TrimSpace(m.Error))
		}
		if len(m.Aux) > 0 {
			aux(m.Aux)
		}
		if m.Stream != "" {
			pending.WriteString(m.Stream)
			flush(false)
		}
		if m.Status != "" && (m.Progress == nil || (m.Progress.Current == 0 && m.Progress.Total == 0)) {
			flush(true)
			if m.ID != "" {
				logf(m.ID + ": " + m.Status)
			} else {
				logf(m.Status)
			}
		}
	}
}
