// Package imageapi serves the image build service (seed 002) in two API
// dialects: the seed's own (/v1/repositories, /v1/builds: snake_case bodies
// exactly as the seed shows them, no envelope, errors as {"errors":[…]}) and
// Runnel's (/api/v1/image-repositories, /api/v1/image-builds: the same names
// in camelCase, with the envelope). Both share the handlers' logic below; only
// the mapping of names differs: request bodies are decoded by one strict
// decoder told which naming to use, and answers are built once in the
// seed's names and renamed key by key for Runnel's API.
package imageapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/imagebuild"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/trigger/webhook"
	"github.com/runnel-ci/runnel/internal/wire"
)

// Service is the image build service (package imagebuild implements it).
type Service interface {
	Registry() string
	CreateRepository(ctx context.Context, in imagebuild.RepositoryInput) (*store.ImageRepository, error)
	GetRepository(ctx context.Context, namespace, name string) (*store.ImageRepository, error)
	ListRepositories(ctx context.Context, namespace string) ([]*store.ImageRepository, error)
	UpdateBuildConfig(ctx context.Context, namespace, name string, buildNode *string, in []imagebuild.TagConfigInput) (*store.ImageRepository, error)
	DeleteRepository(ctx context.Context, namespace, name string) error
	TriggerBuild(ctx context.Context, req imagebuild.BuildRequest) (*imagebuild.Build, error)
	ListBuilds(ctx context.Context, f store.ImageBuildFilter) ([]*imagebuild.Build, int, error)
	GetBuild(ctx context.Context, id string) (*imagebuild.Build, error)
	BuildLogs(ctx context.Context, id string, start, end time.Time) ([]imagebuild.LogLine, error)
	// RouteDelivery starts the builds a webhook delivery asks of an image
	// repository's pipeline (the webhook service calls it).
	webhook.ImageBuilds
}

// seedPageSize is the seed's page of builds.
const seedPageSize = 20

// defaultLogo is the seed's logo_file of every repository.
const defaultLogo = "/static/images/user/default-logo.png"

// ---- request bodies (seed names; Runnel's API uses their camelCase) ----

type tagConfigBody struct {
	ID                  int64  `json:"id"`
	DockerBuildConfigID int64  `json:"docker_build_config_id"`
	CodeRepoType        string `json:"code_repo_type"`
	CodeRepoTypeValue   string `json:"code_repo_type_value"`
	DockerRepoTag       string `json:"docker_repo_tag"`
	DockerfileLocation  string `json:"dockerfile_location"`
	BuildContextPath    string `json:"build_context_path"`
	IsActive            bool   `json:"is_active"`
	BuildCacheEnabled   *bool  `json:"build_cache_enabled"`
	VersionTagging      *int   `json:"version_tagging"`
}

type buildConfigBody struct {
	CodeRepoClient     string          `json:"code_repo_client"`
	CodeRepoNamespace  string          `json:"code_repo_namespace"`
	CodeRepoName       string          `json:"code_repo_name"`
	CodeRepoHost       string          `json:"code_repo_host"`
	CodeRepoCloneURL   string          `json:"code_repo_clone_url"`
	CodeRepoCredential string          `json:"code_repo_credential"`
	BuildNode          string          `json:"build_node"`
	EmailEnabled       bool            `json:"email_enabled"`
	TagConfigs         []tagConfigBody `json:"tag_configs"`
}

// repositoryBody creates a repository (POST /v1/repositories/{namespace}).
type repositoryBody struct {
	RepoName        string           `json:"repo_name"`
	Description     string           `json:"description"`
	FullDescription string           `json:"full_description"`
	IsPublic        bool             `json:"is_public"`
	BuildConfig     *buildConfigBody `json:"build_config"`
}

// nativeRepositoryBody is repositoryBody with the namespace, which
// Runnel's API takes in the body.
type nativeRepositoryBody struct {
	Namespace string `json:"namespace"`
	repositoryBody
}

// buildConfigUpdateBody is PUT …/build-config.
type buildConfigUpdateBody struct {
	BuildNode  *string         `json:"build_node"`
	TagConfigs []tagConfigBody `json:"tag_configs"`
}

// buildTriggerBody is POST /v1/builds.
type buildTriggerBody struct {
	Namespace    string `json:"namespace"`
	RepoName     string `json:"repo_name"`
	Tag          string `json:"tag"`
	CodeCommitID string `json:"code_commit_id"`
}

func tagConfigInputs(in []tagConfigBody) []imagebuild.TagConfigInput {
	out := make([]imagebuild.TagConfigInput, 0, len(in))
	for _, c := range in {
		out = append(out, imagebuild.TagConfigInput{
			ID: c.ID, BuildConfigID: c.DockerBuildConfigID, CodeRepoType: c.CodeRepoType,
			CodeRepoTypeValue: c.CodeRepoTypeValue, DockerRepoTag: c.DockerRepoTag,
			DockerfileLocation: c.DockerfileLocation, BuildContextPath: c.BuildContextPath,
			IsActive: c.IsActive, BuildCacheEnabled: c.BuildCacheEnabled, VersionTagging: c.VersionTagging,
		})
	}
	return out
}

// ---- answers (seed names) ----

type repositoryJSON struct {
	RepoStarredCount int             `json:"repo_starred_count"`
	Namespace        string          `json:"namespace"`
	LogoFile         string          `json:"logo_file"`
	RepoPath         string          `json:"repo_path"`
	RepoName         string          `json:"repo_name"`
	Description      string          `json:"description"`
	FullDescription  string          `json:"full_description"`
	CreatedBy        string          `json:"created_by"`
	CreatedAt        string          `json:"created_at"`
	UpdatedAt        string          `json:"updated_at"`
	IsPublic         bool            `json:"is_public"`
	IsAutomated      bool            `json:"is_automated"`
	Download         int             `json:"download"`
	Upload           int             `json:"upload"`
	PulledAt         *string         `json:"pulled_at"`
	PushedAt         *string         `json:"pushed_at"`
	PipelineID       string          `json:"pipeline_id"`
	BuildConfig      buildConfigJSON `json:"build_config"`
}

type buildConfigJSON struct {
	ID                  int64           `json:"id"`
	DockerRepoPath      string          `json:"docker_repo_path"`
	CodeRepoClient      string          `json:"code_repo_client"`
	CodeRepoPath        string          `json:"code_repo_path"`
	CodeRepoWebhookCode string          `json:"code_repo_webhook_code"`
	CodeRepoPublicKey   *string         `json:"code_repo_public_key"`
	CreatedBy           string          `json:"created_by"`
	BuildNode           string          `json:"build_node"`
	EmailEnabled        bool            `json:"email_enabled"`
	CodeRepoPathURL     string          `json:"code_repo_path_url"`
	DeployURL           *string         `json:"deploy_url"`
	CodeRepoCloneURL    string          `json:"code_repo_clone_url,omitempty"`
	CodeRepoNamespace   string          `json:"code_repo_namespace,omitempty"`
	CodeRepoName        string          `json:"code_repo_name,omitempty"`
	CodeRepoHost        string          `json:"code_repo_host,omitempty"`
	CodeRepoCredential  string          `json:"code_repo_credential,omitempty"`
	TagConfigs          []tagConfigJSON `json:"tag_configs"`
}

type tagConfigJSON struct {
	ID                  int64  `json:"id"`
	DockerBuildConfigID int64  `json:"docker_build_config_id"`
	DockerRepoTag       string `json:"docker_repo_tag"`
	DockerfileLocation  string `json:"dockerfile_location"`
	CodeRepoType        string `json:"code_repo_type"`
	CodeRepoTypeValue   string `json:"code_repo_type_value"`
	IsActive            bool   `json:"is_active"`
	VersionTagging      int    `json:"version_tagging"`
	BuildContextPath    string `json:"build_context_path"`
	BuildCacheEnabled   bool   `json:"build_cache_enabled"`
}

type buildJSON struct {
	BuildID              string  `json:"build_id"`
	CreatedAt            string  `json:"created_at"`
	StartedAt            *string `json:"started_at"`
	EndedAt              *string `json:"ended_at"`
	CodeHeadCommit       *string `json:"code_head_commit"`
	CodeRepoClient       string  `json:"code_repo_client"`
	CodeRepoPath         string  `json:"code_repo_path"`
	CodeRepoType         string  `json:"code_repo_type"`
	CodeRepoTypeValue    string  `json:"code_repo_type_value"`
	CreatedBy            string  `json:"created_by"`
	Detail               string  `json:"detail"`
	ImageID              *string `json:"image_id"`
	DockerRepoPath       string  `json:"docker_repo_path"`
	DockerRepoTag        string  `json:"docker_repo_tag"`
	DockerRepoVersionTag *string `json:"docker_repo_version_tag"`
	DockerfileLocation   string  `json:"dockerfile_location"`
	Status               string  `json:"status"`
	AutoCreated          bool    `json:"auto_created"`
	StepAt               int     `json:"step_at"`
	BuildNode            string  `json:"build_node"`
	BuildContextPath     string  `json:"build_context_path"`
	BuildCacheEnabled    bool    `json:"build_cache_enabled"`
	CodeRepoHTTPURL      string  `json:"code_repo_http_url"`
	CodeCommitHTTPURL    *string `json:"code_commit_http_url"`
	CodeRepoBranchURL    *string `json:"code_repo_branch_url"`
	IsRemovable          bool    `json:"is_removable"`
	Namespace            string  `json:"namespace"`
	RepoName             string  `json:"repo_name"`
	RunID                string  `json:"run_id"`
	RunNumber            int64   `json:"run_number"`
	PipelineID           string  `json:"pipeline_id"`
	Image                string  `json:"image"`
}

// seedBuildPage is GET /v1/builds.
type seedBuildPage struct {
	Count    int         `json:"count"`
	Next     *string     `json:"next"`
	Previous *string     `json:"previous"`
	Results  []buildJSON `json:"results"`
}

type seedLogLine struct {
	Message string `json:"message"`
	Level   string `json:"level"`
	Time    int64  `json:"time"`
}

type imageLogLineJSON struct {
	Seq       int64  `json:"seq"`
	Time      string `json:"time"`
	Level     string `json:"level"`
	Message   string `json:"message"`
	StepName  string `json:"stepName"`
	StepRunID string `json:"stepRunId"`
}

func strOrNil(v string) *string {
	if v == "" {
		return nil
	}
	return &v
}

func toRepositoryJSON(r *store.ImageRepository) repositoryJSON {
	full := r.Namespace + "/" + r.Name
	out := repositoryJSON{
		Namespace: r.Namespace, LogoFile: defaultLogo, RepoPath: full, RepoName: r.Name,
		Description: r.Description, FullDescription: r.FullDescription, CreatedBy: r.CreatedBy,
		CreatedAt: wire.Time(r.CreatedAt), UpdatedAt: wire.Time(r.UpdatedAt), IsPublic: r.IsPublic,
		PipelineID: r.PipelineID, BuildConfig: toBuildConfigJSON(r),
	}
	for _, c := range r.TagConfigs {
		out.IsAutomated = out.IsAutomated || c.IsActive
	}
	return out
}

func toBuildConfigJSON(r *store.ImageRepository) buildConfigJSON {
	src := r.Source
	bc := buildConfigJSON{
		ID: r.ID, DockerRepoPath: r.Namespace + "/" + r.Name, CodeRepoClient: src.Client,
		CodeRepoPath: imagebuild.RepoPath(src), CodeRepoWebhookCode: r.PipelineID,
		CreatedBy: r.CreatedBy, BuildNode: r.BuildNode, EmailEnabled: r.EmailEnabled,
		CodeRepoPathURL: imagebuild.WebURL(src), CodeRepoHost: src.Host, CodeRepoCredential: src.CredentialID,
		TagConfigs: []tagConfigJSON{},
	}
	if src.Client == imagebuild.ClientSimple {
		bc.CodeRepoPathURL = imagebuild.ShownCloneURL(src)
		bc.CodeRepoCloneURL = imagebuild.ShownCloneURL(src)
	} else {
		bc.CodeRepoNamespace, bc.CodeRepoName = src.Namespace, src.Name
	}
	for _, c := range r.TagConfigs {
		bc.TagConfigs = append(bc.TagConfigs, tagConfigJSON{
			ID: c.ID, DockerBuildConfigID: r.ID, DockerRepoTag: c.DockerRepoTag, DockerfileLocation: c.DockerfileLocation,
			CodeRepoType: c.CodeRepoType, CodeRepoTypeValue: c.CodeRepoTypeValue, IsActive: c.IsActive,
			VersionTagging: c.VersionTagging, BuildContextPath: c.BuildContextPath, BuildCacheEnabled: c.BuildCacheEnabled,
		})
	}
	return bc
}

func toBuildJSON(b *imagebuild.Build, registry string) buildJSON {
	r := b.Repository
	src := r.Source
	repoURL := imagebuild.WebURL(src)
	if src.Client == imagebuild.ClientSimple {
		repoURL = imagebuild.ShownCloneURL(src)
	}
	return buildJSON{
		BuildID: b.ID, CreatedAt: wire.Time(b.CreatedAt), StartedAt: wire.TimePtr(b.StartedAt), EndedAt: wire.TimePtr(b.EndedAt),
		CodeHeadCommit: strOrNil(b.Commit), CodeRepoClient: src.Client, CodeRepoPath: imagebuild.RepoPath(src),
		CodeRepoType: b.CodeRepoType, CodeRepoTypeValue: b.CodeRepoTypeValue, CreatedBy: b.CreatedBy, Detail: b.Detail,
		ImageID: strOrNil(b.ImageID), DockerRepoPath: r.Namespace + "/" + r.Name, DockerRepoTag: b.DockerRepoTag,
		DockerRepoVersionTag: strOrNil(b.DockerRepoVersion), DockerfileLocation: b.DockerfileLocation,
		Status: b.Status, AutoCreated: b.AutoCreated, StepAt: b.StepAt, BuildNode: r.BuildNode,
		BuildContextPath: b.BuildContextPath, BuildCacheEnabled: b.BuildCacheEnabled,
		CodeRepoHTTPURL:   repoURL,
		CodeCommitHTTPURL: strOrNil(imagebuild.CommitURL(src, b.Commit)),
		CodeRepoBranchURL: strOrNil(imagebuild.RefURL(src, b.CodeRepoType, b.CodeRepoTypeValue)),
		IsRemovable:       b.Removable(), Namespace: r.Namespace, RepoName: r.Name, RunID: b.ID,
		RunNumber: b.RunNumber, PipelineID: b.PipelineID, Image: b.Image(registry),
	}
}

// ---- naming ----

// snakeToCamel renames a seed name for Runnel's API: build_config →
// buildConfig, code_repo_path_url → codeRepoPathUrl.
func snakeToCamel(s string) string {
	if !strings.Contains(s, "_") {
		return s
	}
	parts := strings.Split(s, "_")
	var b strings.Builder
	b.WriteString(parts[0])
	for _, p := range parts[1:] {
		if p == "" {
			continue
		}
		b.WriteString(strings.ToUpper(p[:1]) + p[1:])
	}
	return b.String()
}

// camelPath renames every element of a field path
// (build_config.tag_configs[1].docker_repo_tag).
func camelPath(p string) string {
	parts := strings.Split(p, ".")
	for i, part := range parts {
		parts[i] = snakeToCamel(part)
	}
	return strings.Join(parts, ".")
}

// camelJSON marshals v with every object key renamed to camelCase, keeping
// the order of the keys.
func camelJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("api: cannot encode %T: %v", v, err)) // unreachable for this file's types
	}
	return camelKeys(b)
}

func camelKeys(raw []byte) []byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || (raw[0] != '{' && raw[0] != '[') {
		return raw
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	open, _ := dec.Token()
	var buf bytes.Buffer
	isObject := open == json.Delim('{')
	if isObject {
		buf.WriteByte('{')
	} else {
		buf.WriteByte('[')
	}
	for first := true; dec.More(); first = false {
		if !first {
			buf.WriteByte(',')
		}
		if isObject {
			k, _ := dec.Token()
			kb, _ := json.Marshal(snakeToCamel(k.(string)))
			buf.Write(kb)
			buf.WriteByte(':')
		}
		var v json.RawMessage
		_ = dec.Decode(&v) // the input is this package's own marshalled JSON
		buf.Write(camelKeys(v))
	}
	if isObject {
		buf.WriteByte('}')
	} else {
		buf.WriteByte(']')
	}
	return buf.Bytes()
}

// ---- strict nested decoding ----

// strictDecoder decodes a body into a struct, refusing unknown and repeated
// fields at every level and naming the full path of any bad value
// (build_config.tag_configs[1].docker_repo_tag). camel: the accepted names
// are the json tags in camelCase (Runnel's API).
type strictDecoder struct{ camel bool }

func (d strictDecoder) name(tag string) string {
	if d.camel {
		return snakeToCamel(tag)
	}
	return tag
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func badField(path, format string, args ...any) *apikit.Error {
	where := path
	if where == "" {
		where = "body"
	}
	return &apikit.Error{Status: http.StatusBadRequest, Msg: where + ": " + fmt.Sprintf(format, args...), Field: path}
}

// rawKind names the JSON value raw holds.
func rawKind(raw []byte) string {
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func (d strictDecoder) decode(raw json.RawMessage, v reflect.Value, path string) error {
	raw = bytes.TrimSpace(raw)
	if string(raw) == "null" {
		v.Set(reflect.Zero(v.Type()))
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return d.decode(raw, v.Elem(), path)
	case reflect.Struct:
		if raw[0] != '{' {
			return badField(path, "must be an object, got %s", rawKind(raw))
		}
		fields := apikit.FieldsOf(v.Type())
		names := make([]string, 0, len(fields.Names))
		index := map[string][]int{}
		for _, n := range fields.Names {
			names = append(names, d.name(n))
			index[d.name(n)] = fields.Index[n]
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if _, err := dec.Token(); err != nil {
			return badField(path, "malformed JSON")
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return badField(path, "malformed JSON")
			}
			key, _ := tok.(string)
			var val json.RawMessage
			if err := dec.Decode(&val); err != nil {
				return badField(path, "malformed JSON")
			}
			fp := joinPath(path, key)
			i, ok := index[key]
			if !ok {
				if m := apikit.Closest(key, names); m != "" {
					return badField(fp, "unknown field; did you mean %s?", m)
				}
				return badField(fp, "unknown field; accepted: %s", strings.Join(names, ", "))
			}
			if seen[key] {
				return badField(fp, "given twice")
			}
			seen[key] = true
			if err := d.decode(val, v.FieldByIndex(i), fp); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if raw[0] != '[' {
			return badField(path, "must be an array, got %s", rawKind(raw))
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if _, err := dec.Token(); err != nil {
			return badField(path, "malformed JSON")
		}
		out := reflect.MakeSlice(v.Type(), 0, 0)
		for i := 0; dec.More(); i++ {
			var el json.RawMessage
			if err := dec.Decode(&el); err != nil {
				return badField(path, "malformed JSON")
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			if err := d.decode(el, ev, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
			out = reflect.Append(out, ev)
		}
		v.Set(out)
		return nil
	}
	if err := json.Unmarshal(raw, v.Addr().Interface()); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return badField(path, "must be %s, got %s", apikit.DescribeType(v.Type()), rawKind(raw))
		}
		return badField(path, "%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// decodeImageBody reads and strictly decodes the request body into dst.
func (a *API) decodeImageBody(r *http.Request, dst any, native bool) error {
	data, err := apikit.ReadBody(r, a.MaxBody)
	if err != nil {
		return err
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return apikit.Errorf(http.StatusBadRequest, "body: empty; send a JSON object")
	}
	if !json.Valid(data) {
		return apikit.SyntaxError(data, errors.New("invalid JSON"))
	}
	if err := apikit.CheckRaw(data, nil, "body"); err != nil {
		return err
	}
	if data[0] != '{' {
		return apikit.Errorf(http.StatusBadRequest, "body: must be a JSON object, got %s", rawKind(data))
	}
	root := ""
	if native {
		root = "body"
	}
	return strictDecoder{camel: native}.decode(data, reflect.ValueOf(dst).Elem(), root)
}

// ---- shared logic ----

// imageService returns the service, or a 503 when the server has none.
func (a *API) imageService() (Service, error) {
	if a.Images == nil {
		return nil, apikit.Errorf(http.StatusServiceUnavailable, "image builds are not enabled on this server: start it with the image build service (--registry HOST[:PORT])")
	}
	return a.Images, nil
}

// nativeErr renames the seed's field paths in a service error for
// Runnel's API (body.buildConfig.tagConfigs[0].dockerRepoTag).
func nativeErr(err error) error {
	var fe *imagebuild.FieldError
	if errors.As(err, &fe) && fe.Field != "" {
		return &apikit.Error{Status: http.StatusBadRequest, Msg: "body." + camelPath(fe.Field) + ": " + fe.Msg, Field: fe.Field}
	}
	return err
}

// checkNames checks a namespace and (when not nil) a repository name from
// the path or the query; where names them ("path parameter ", "query
// parameter " or "" for the seed).
func checkNames(nsField, ns, repoField string, repo *string) error {
	if err := imagebuild.CheckNamespace(nsField, ns); err != nil {
		return err
	}
	if repo != nil {
		if err := imagebuild.CheckRepoName(repoField, *repo); err != nil {
			return err
		}
	}
	return nil
}

// asParam turns a service FieldError about a path or query parameter into
// Runnel's wording ("path parameter namespace: …").
func asParam(err error, kind string) error {
	var fe *imagebuild.FieldError
	if errors.As(err, &fe) {
		return &apikit.Error{Status: http.StatusBadRequest, Msg: kind + " " + fe.Field + ": " + fe.Msg, Field: fe.Field}
	}
	return err
}

// createRepository is POST /v1/repositories/{namespace} and POST
// /api/v1/image-repositories.
func (a *API) createRepository(r *http.Request, ns string, b *repositoryBody) (*store.ImageRepository, error) {
	svc, err := a.imageService()
	if err != nil {
		return nil, err
	}
	if b.BuildConfig == nil {
		return nil, &imagebuild.FieldError{Field: "build_config", Msg: "required: the source repository and its tag configs"}
	}
	bc := b.BuildConfig
	repo, err := svc.CreateRepository(r.Context(), imagebuild.RepositoryInput{
		Namespace: ns, Name: b.RepoName, Description: b.Description, FullDescription: b.FullDescription,
		IsPublic: b.IsPublic, BuildNode: bc.BuildNode, EmailEnabled: bc.EmailEnabled,
		Source: store.ImageSource{
			Client: bc.CodeRepoClient, Namespace: bc.CodeRepoNamespace, Name: bc.CodeRepoName,
			Host: bc.CodeRepoHost, CloneURL: bc.CodeRepoCloneURL, CredentialID: bc.CodeRepoCredential,
		},
		TagConfigs: tagConfigInputs(bc.TagConfigs),
		CreatedBy:  apikit.PrincipalFrom(r.Context()).Subject,
	})
	if errors.Is(err, runnel.ErrConflict) {
		if _, gerr := svc.GetRepository(r.Context(), ns, b.RepoName); gerr == nil {
			return nil, &apikit.Error{Status: http.StatusConflict, Msg: apikit.DomainMsg(err), Code: "resource_already_exist", Field: "repo_name"}
		}
	}
	return repo, err
}

func (a *API) updateBuildConfig(r *http.Request, ns, name string, b *buildConfigUpdateBody) (*store.ImageRepository, error) {
	svc, err := a.imageService()
	if err != nil {
		return nil, err
	}
	return svc.UpdateBuildConfig(r.Context(), ns, name, b.BuildNode, tagConfigInputs(b.TagConfigs))
}

func (a *API) triggerBuild(r *http.Request, b *buildTriggerBody) (*imagebuild.Build, error) {
	svc, err := a.imageService()
	if err != nil {
		return nil, err
	}
	return svc.TriggerBuild(r.Context(), imagebuild.BuildRequest{
		Namespace: b.Namespace, RepoName: b.RepoName, Tag: b.Tag, Commit: b.CodeCommitID,
		By: apikit.PrincipalFrom(r.Context()).Subject,
	})
}

// buildID returns the build id of the path (a run id); anything not shaped
// like one names no build.
func buildID(r *http.Request, param string) (string, error) {
	id := r.PathValue(param)
	if !apikit.IsID(id, "run_") {
		return "", apikit.Errorf(http.StatusNotFound, "build %s not found", id)
	}
	return id, nil
}

func (a *API) getBuild(r *http.Request, param string) (*imagebuild.Build, error) {
	svc, err := a.imageService()
	if err != nil {
		return nil, err
	}
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return nil, err
	}
	id, err := buildID(r, param)
	if err != nil {
		return nil, err
	}
	return svc.GetBuild(r.Context(), id)
}

// buildLogLine is a build's log line with its step.
type buildLogLine struct {
	step *store.StepRun
	line store.LogLine
}

// buildLogs returns a build's log lines within [start, end] (zero: no
// bound), every step's in order.
func (a *API) buildLogs(r *http.Request, param string, start, end time.Time) ([]buildLogLine, error) {
	svc, err := a.imageService()
	if err != nil {
		return nil, err
	}
	id, err := buildID(r, param)
	if err != nil {
		return nil, err
	}
	lines, err := svc.BuildLogs(r.Context(), id, start, end)
	if err != nil {
		return nil, err
	}
	out := make([]buildLogLine, len(lines))
	for i, l := range lines {
		out[i] = buildLogLine{step: l.Step, line: l.LogLine}
	}
	return out, nil
}

// logWindow turns optional Unix-second bounds into the store's inclusive
// window: start T keeps lines at T.000 or later, end E lines before E+1s.
func logWindow(start, end int64) (time.Time, time.Time) {
	var s, e time.Time
	if start >= 0 {
		s = time.Unix(start, 0).UTC()
	}
	if end >= 0 {
		e = time.Unix(end, 0).UTC().Add(time.Second - time.Nanosecond)
	}
	return s, e
}

// ---- the seed's API ----

func (a *API) seedCreateRepository(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.imageService(); err != nil {
		return err
	}
	ns := r.PathValue("namespace")
	if err := checkNames("namespace", ns, "", nil); err != nil {
		return err
	}
	var b repositoryBody
	if err := a.decodeImageBody(r, &b, false); err != nil {
		return err
	}
	repo, err := a.createRepository(r, ns, &b)
	if err != nil {
		return err
	}
	apikit.WriteJSON(w, http.StatusCreated, toRepositoryJSON(repo))
	return nil
}

// seedRepoPath returns the checked namespace and repo_name of the path.
func seedRepoPath(r *http.Request) (string, string, error) {
	ns, name := r.PathValue("namespace"), r.PathValue("repo_name")
	return ns, name, checkNames("namespace", ns, "repo_name", &name)
}

func (a *API) seedGetRepository(w http.ResponseWriter, r *http.Request) error {
	svc, err := a.imageService()
	if err != nil {
		return err
	}
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	ns, name, err := seedRepoPath(r)
	if err != nil {
		return err
	}
	repo, err := svc.GetRepository(r.Context(), ns, name)
	if err != nil {
		return err
	}
	apikit.WriteJSON(w, http.StatusOK, toRepositoryJSON(repo))
	return nil
}

func (a *API) seedDeleteRepository(w http.ResponseWriter, r *http.Request) error {
	svc, err := a.imageService()
	if err != nil {
		return err
	}
	ns, name, err := seedRepoPath(r)
	if err != nil {
		return err
	}
	if err := svc.DeleteRepository(r.Context(), ns, name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) seedUpdateBuildConfig(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.imageService(); err != nil {
		return err
	}
	ns, name, err := seedRepoPath(r)
	if err != nil {
		return err
	}
	var b buildConfigUpdateBody
	if err := a.decodeImageBody(r, &b, false); err != nil {
		return err
	}
	repo, err := a.updateBuildConfig(r, ns, name, &b)
	if err != nil {
		return err
	}
	apikit.WriteJSON(w, http.StatusOK, toBuildConfigJSON(repo))
	return nil
}

func (a *API) seedListBuilds(w http.ResponseWriter, r *http.Request) error {
	svc, err := a.imageService()
	if err != nil {
		return err
	}
	q, err := apikit.ParseQuery(r.URL.RawQuery, "namespace", "page", "repo_name")
	if err != nil {
		return err
	}
	pg := 1
	if q.Has("page") {
		n, err := strconv.Atoi(q.Str("page"))
		if err != nil || n < 1 || n > apikit.MaxPage {
			return &apikit.Error{Status: http.StatusBadRequest, Field: "page",
				Msg: fmt.Sprintf("page: must be a positive integer (at most %d), got %q", apikit.MaxPage, q.Str("page"))}
		}
		pg = n
	}
	ns, repo := q.Str("namespace"), q.Str("repo_name")
	builds, count, err := svc.ListBuilds(r.Context(), store.ImageBuildFilter{
		Namespace: ns, RepoName: repo, Offset: (pg - 1) * seedPageSize, Limit: seedPageSize,
	})
	if err != nil {
		return err
	}
	pages := (count + seedPageSize - 1) / seedPageSize
	if pg > max(pages, 1) {
		return &apikit.Error{Status: http.StatusNotFound, Field: "page",
			Msg: fmt.Sprintf("page %d is out of range: there are %d pages of builds", pg, pages)}
	}
	link := func(n int) *string {
		v := url.Values{}
		if ns != "" {
			v.Set("namespace", ns)
		}
		if repo != "" {
			v.Set("repo_name", repo)
		}
		v.Set("page", strconv.Itoa(n))
		u := apikit.ExternalBase(r, a.ExternalURL) + "/v1/builds?" + v.Encode()
		return &u
	}
	out := seedBuildPage{Count: count, Results: make([]buildJSON, 0, len(builds))}
	if pg < pages {
		out.Next = link(pg + 1)
	}
	if pg > 1 {
		out.Previous = link(pg - 1)
	}
	reg := svc.Registry()
	for _, b := range builds {
		out.Results = append(out.Results, toBuildJSON(b, reg))
	}
	apikit.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) seedTriggerBuild(w http.ResponseWriter, r *http.Request) error {
	svc, err := a.imageService()
	if err != nil {
		return err
	}
	var b buildTriggerBody
	if err := a.decodeImageBody(r, &b, false); err != nil {
		return err
	}
	build, err := a.triggerBuild(r, &b)
	if err != nil {
		return err
	}
	apikit.WriteJSON(w, http.StatusCreated, toBuildJSON(build, svc.Registry()))
	return nil
}

func (a *API) seedGetBuild(w http.ResponseWriter, r *http.Request) error {
	b, err := a.getBuild(r, "build_id")
	if err != nil {
		return err
	}
	apikit.WriteJSON(w, http.StatusOK, toBuildJSON(b, a.Images.Registry()))
	return nil
}

// unixParam parses an optional Unix-seconds parameter (-1 when absent).
func unixParam(q apikit.Query, name string) (int64, error) {
	if !q.Has(name) {
		return -1, nil
	}
	n, err := strconv.ParseInt(q.Str(name), 10, 64)
	if err != nil || n < 0 || n > apikit.MaxUnix {
		return 0, &apikit.Error{Status: http.StatusBadRequest, Field: name,
			Msg: fmt.Sprintf("%s: must be a time in Unix seconds (a non-negative integer), got %q", name, q.Str(name))}
	}
	return n, nil
}

// logBounds parses the start and end parameters of a log query.
func logBounds(q apikit.Query, startName, endName, where string) (time.Time, time.Time, error) {
	start, err := unixParam(q, startName)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	end, err := unixParam(q, endName)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	if start >= 0 && end >= 0 && end < start {
		return time.Time{}, time.Time{}, &apikit.Error{Status: http.StatusBadRequest, Field: endName,
			Msg: fmt.Sprintf("%s%s: %d is before %s %d", where, endName, end, startName, start)}
	}
	s, e := logWindow(start, end)
	return s, e, nil
}

func (a *API) seedBuildLogs(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.imageService(); err != nil {
		return err
	}
	q, err := apikit.ParseQuery(r.URL.RawQuery, "start_time", "end_time")
	if err != nil {
		return err
	}
	start, end, err := logBounds(q, "start_time", "end_time", "")
	if err != nil {
		return err
	}
	lines, err := a.buildLogs(r, "build_id", start, end)
	if err != nil {
		return err
	}
	out := make([]seedLogLine, 0, len(lines))
	for _, l := range lines {
		out = append(out, seedLogLine{Message: l.line.Message, Level: strings.ToUpper(l.line.Level), Time: l.line.Time.Unix()})
	}
	apikit.WriteJSON(w, http.StatusOK, out)
	return nil
}

// ---- Runnel's API ----

func (a *API) createImageRepository(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.imageService(); err != nil {
		return err
	}
	var b nativeRepositoryBody
	if err := a.decodeImageBody(r, &b, true); err != nil {
		return err
	}
	if err := checkNames("namespace", b.Namespace, "", nil); err != nil {
		return nativeErr(err)
	}
	repo, err := a.createRepository(r, b.Namespace, &b.repositoryBody)
	if err != nil {
		return nativeErr(err)
	}
	w.Header().Set("Location", "/api/v1/image-repositories/"+repo.Namespace+"/"+repo.Name)
	a.ok(w, http.StatusCreated, camelJSON(toRepositoryJSON(repo)))
	return nil
}

func (a *API) listImageRepositories(w http.ResponseWriter, r *http.Request) error {
	svc, err := a.imageService()
	if err != nil {
		return err
	}
	q, err := apikit.ParseQuery(r.URL.RawQuery, "namespace")
	if err != nil {
		return err
	}
	ns := q.Str("namespace")
	if q.Has("namespace") {
		if err := imagebuild.CheckNamespace("namespace", ns); err != nil {
			return asParam(err, "query parameter")
		}
	}
	repos, err := svc.ListRepositories(r.Context(), ns)
	if err != nil {
		return asParam(err, "query parameter")
	}
	a.ok(w, http.StatusOK, camelJSON(apikit.WholeList(repos, toRepositoryJSON)))
	return nil
}

// nativeRepoPath returns the checked namespace and repoName of the path.
func nativeRepoPath(r *http.Request) (string, string, error) {
	ns, name := r.PathValue("namespace"), r.PathValue("repoName")
	if err := checkNames("namespace", ns, "repoName", &name); err != nil {
		return "", "", asParam(err, "path parameter")
	}
	return ns, name, nil
}

func (a *API) getImageRepository(w http.ResponseWriter, r *http.Request) error {
	svc, err := a.imageService()
	if err != nil {
		return err
	}
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	ns, name, err := nativeRepoPath(r)
	if err != nil {
		return err
	}
	repo, err := svc.GetRepository(r.Context(), ns, name)
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, camelJSON(toRepositoryJSON(repo)))
	return nil
}

func (a *API) deleteImageRepository(w http.ResponseWriter, r *http.Request) error {
	svc, err := a.imageService()
	if err != nil {
		return err
	}
	ns, name, err := nativeRepoPath(r)
	if err != nil {
		return err
	}
	if err := svc.DeleteRepository(r.Context(), ns, name); err != nil {
		return err
	}
	a.ok(w, http.StatusOK, nil)
	return nil
}

func (a *API) updateImageBuildConfig(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.imageService(); err != nil {
		return err
	}
	ns, name, err := nativeRepoPath(r)
	if err != nil {
		return err
	}
	var b buildConfigUpdateBody
	if err := a.decodeImageBody(r, &b, true); err != nil {
		return err
	}
	repo, err := a.updateBuildConfig(r, ns, name, &b)
	if err != nil {
		return nativeErr(err)
	}
	a.ok(w, http.StatusOK, camelJSON(toBuildConfigJSON(repo)))
	return nil
}

func (a *API) listImageBuilds(w http.ResponseWriter, r *http.Request) error {
	svc, err := a.imageService()
	if err != nil {
		return err
	}
	q, err := apikit.ParseQuery(r.URL.RawQuery, "namespace", "repoName", "page", "pageSize")
	if err != nil {
		return err
	}
	pg, err := q.Pagination()
	if err != nil {
		return err
	}
	ns, repo := q.Str("namespace"), q.Str("repoName")
	if q.Has("namespace") {
		if err := imagebuild.CheckNamespace("namespace", ns); err != nil {
			return asParam(err, "query parameter")
		}
	}
	if q.Has("repoName") {
		if err := imagebuild.CheckRepoName("repoName", repo); err != nil {
			return asParam(err, "query parameter")
		}
	}
	builds, total, err := svc.ListBuilds(r.Context(), store.ImageBuildFilter{Namespace: ns, RepoName: repo, Offset: pg.Offset(), Limit: pg.Size})
	if err != nil {
		return err
	}
	reg := svc.Registry()
	out := apikit.List[buildJSON]{Items: make([]buildJSON, 0, len(builds)), Total: total, Page: pg.Number, PageSize: pg.Size}
	for _, b := range builds {
		out.Items = append(out.Items, toBuildJSON(b, reg))
	}
	a.ok(w, http.StatusOK, camelJSON(out))
	return nil
}

func (a *API) triggerImageBuild(w http.ResponseWriter, r *http.Request) error {
	svc, err := a.imageService()
	if err != nil {
		return err
	}
	var b buildTriggerBody
	if err := a.decodeImageBody(r, &b, true); err != nil {
		return err
	}
	build, err := a.triggerBuild(r, &b)
	if err != nil {
		return nativeErr(err)
	}
	w.Header().Set("Location", "/api/v1/image-builds/"+build.ID)
	a.ok(w, http.StatusCreated, camelJSON(toBuildJSON(build, svc.Registry())))
	return nil
}

func (a *API) getImageBuild(w http.ResponseWriter, r *http.Request) error {
	b, err := a.getBuild(r, "buildId")
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, camelJSON(toBuildJSON(b, a.Images.Registry())))
	return nil
}

func (a *API) imageBuildLogs(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.imageService(); err != nil {
		return err
	}
	q, err := apikit.ParseQuery(r.URL.RawQuery, "startTime", "endTime")
	if err != nil {
		return err
	}
	start, end, err := logBounds(q, "startTime", "endTime", "query parameter ")
	if err != nil {
		var ae *apikit.Error
		if errors.As(err, &ae) && !strings.HasPrefix(ae.Msg, "query parameter") {
			ae.Msg = "query parameter " + ae.Msg
		}
		return err
	}
	lines, err := a.buildLogs(r, "buildId", start, end)
	if err != nil {
		return err
	}
	out := make([]imageLogLineJSON, 0, len(lines))
	for _, l := range lines {
		out = append(out, imageLogLineJSON{
			Seq: l.line.Seq, Time: wire.Time(l.line.Time), Level: l.line.Level, Message: l.line.Message,
			StepName: l.step.Name, StepRunID: l.step.ID,
		})
	}
	a.ok(w, http.StatusOK, out)
	return nil
}
