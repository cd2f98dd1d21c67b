package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

// Image build repositories: a row of image_repositories per repository, its
// tag configs in image_tag_configs ordered by position, and the pipeline it
// owns (its builds are that pipeline's runs). Deleting the pipeline cascades
// to both tables.

const (
	// defaultImageBuilds and maxImageBuilds bound one page of ListImageBuilds.
	defaultImageBuilds = 20
	maxImageBuilds     = 1000
)

const imageRepoCols = `r.id, r.namespace, r.name, r.description, r.full_description, r.is_public,
	r.pipeline_id, r.source_client, r.source_namespace, r.source_name, r.source_host, r.source_clone_url,
	r.source_credential_id, r.build_node, r.email_enabled, r.created_by, r.created_at, r.updated_at`

// imageTagCols are read through a LEFT JOIN: all NULL for a repository
// without tag configs.
const imageTagCols = `c.id, c.code_repo_type, c.code_repo_type_value, c.docker_repo_tag,
	c.dockerfile_location, c.build_context_path, c.is_active, c.build_cache_enabled, c.version_tagging`

// imageRepoQuery reads repositories with their tag configs in one statement
// (so they agree), a repository's rows together and its configs in order.
const imageRepoQuery = `SELECT ` + imageRepoCols + `, ` + imageTagCols + `
	FROM image_repositories r LEFT JOIN image_tag_configs c ON c.repository_id = r.id`

const imageRepoOrder = ` ORDER BY r.id, c.position, c.id`

// scanImageRow scans one row of imageRepoQuery: the repository, and its tag
// config when the row has one.
func scanImageRow(sc scanner) (*store.ImageRepository, *store.ImageTagConfig, error) {
	var (
		r                   store.ImageRepository
		created, updated    int64
		cID, cVersion       sql.NullInt64
		cType, cValue, cTag sql.NullString
		cFile, cContext     sql.NullString
		cActive, cCache     sql.NullBool
	)
	err := sc.Scan(&r.ID, &r.Namespace, &r.Name, &r.Description, &r.FullDescription, &r.IsPublic,
		&r.PipelineID, &r.Source.Client, &r.Source.Namespace, &r.Source.Name, &r.Source.Host,
		&r.Source.CloneURL, &r.Source.CredentialID, &r.BuildNode, &r.EmailEnabled, &r.CreatedBy,
		&created, &updated,
		&cID, &cType, &cValue, &cTag, &cFile, &cContext, &cActive, &cCache, &cVersion)
	if err != nil {
		return nil, nil, err
	}
	r.CreatedAt, r.UpdatedAt = fromMicros(created), fromMicros(updated)
	r.TagConfigs = []*store.ImageTagConfig{}
	if !cID.Valid {
		return &r, nil, nil
	}
	return &r, &store.ImageTagConfig{
		ID: cID.Int64, RepositoryID: r.ID, CodeRepoType: cType.String, CodeRepoTypeValue: cValue.String,
		DockerRepoTag: cTag.String, DockerfileLocation: cFile.String, BuildContextPath: cContext.String,
		IsActive: cActive.Bool, BuildCacheEnabled: cCache.Bool, VersionTagging: int(cVersion.Int64),
	}, nil
}

// loadImageRepos runs imageRepoQuery with cond (a WHERE clause or "") and
// returns the repositories by namespace and name, in byte order (the
// databases' collations differ), each with its tag configs by position.
func (s *Store) loadImageRepos(ctx context.Context, q querier, cond string, args ...any) ([]*store.ImageRepository, error) {
	rows, err := s.query(ctx, q, imageRepoQuery+cond+imageRepoOrder, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*store.ImageRepository{}
	var cur *store.ImageRepository
	for rows.Next() {
		r, c, err := scanImageRow(rows)
		if err != nil {
			return nil, err
		}
		if cur == nil || cur.ID != r.ID {
			cur = r
			out = append(out, r)
		}
		if c != nil {
			cur.TagConfigs = append(cur.TagConfigs, c)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *store.ImageRepository) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name),
			cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// loadImageRepo is loadImageRepos for a condition that selects at most one
// repository; none is sql.ErrNoRows.
func (s *Store) loadImageRepo(ctx context.Context, q querier, cond string, args ...any) (*store.ImageRepository, error) {
	list, err := s.loadImageRepos(ctx, q, cond, args...)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, sql.ErrNoRows
	}
	return list[0], nil
}

// insertTagConfig inserts c as repository repoID's config at position pos
// and returns its id.
func (s *Store) insertTagConfig(ctx context.Context, tx *sql.Tx, repoID int64, pos int, c *store.ImageTagConfig) (int64, error) {
	var id int64
	err := s.queryRow(ctx, tx, `INSERT INTO image_tag_configs (repository_id, position, code_repo_type,
		code_repo_type_value, docker_repo_tag, dockerfile_location, build_context_path, is_active,
		build_cache_enabled, version_tagging) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		repoID, pos, c.CodeRepoType, c.CodeRepoTypeValue, c.DockerRepoTag, c.DockerfileLocation,
		c.BuildContextPath, c.IsActive, c.BuildCacheEnabled, c.VersionTagging).Scan(&id)
	return id, err
}

// checkTagConfigs rejects a nil entry.
func checkTagConfigs(op string, configs []*store.ImageTagConfig) error {
	for i, c := range configs {
		if c == nil {
			return invalid(op, fmt.Sprintf("tag config #%d is missing (nil)", i+1))
		}
	}
	return nil
}

// CreateImageRepository inserts p (as CreatePipeline does), r and r's tag
// configs, in that order, in one transaction.
func (s *Store) CreateImageRepository(ctx context.Context, r *store.ImageRepository, p *store.Pipeline) error {
	op := "create image repository"
	switch {
	case r == nil || p == nil:
		return invalid(op, "both the repository and its pipeline must be given")
	case r.Namespace == "" || r.Name == "":
		return invalid(op, "the namespace and the name must not be empty")
	}
	op += " " + r.Namespace + "/" + r.Name
	if err := checkTagConfigs(op, r.TagConfigs); err != nil {
		return err
	}
	now := s.nowUTC()
	created, updated := orNow(r.CreatedAt, now), orNow(r.UpdatedAt, now)
	var (
		id  int64
		ids []int64
	)
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ids = ids[:0]
		if err := s.insertPipeline(ctx, tx, p); err != nil {
			if errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("%s: %w", op, err)
			}
			return err
		}
		err := s.queryRow(ctx, tx, `INSERT INTO image_repositories (namespace, name, description,
			full_description, is_public, pipeline_id, source_client, source_namespace, source_name,
			source_host, source_clone_url, source_credential_id, build_node, email_enabled, created_by,
			created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			r.Namespace, r.Name, r.Description, r.FullDescription, r.IsPublic, p.ID, r.Source.Client,
			r.Source.Namespace, r.Source.Name, r.Source.Host, r.Source.CloneURL, r.Source.CredentialID,
			r.BuildNode, r.EmailEnabled, r.CreatedBy, micros(created), micros(updated)).Scan(&id)
		if s.d.isUnique(err) {
			// The pipeline is new, so the clash is on (namespace, name).
			return fmt.Errorf("%s: an image repository named %s/%s already exists: %w",
				op, r.Namespace, r.Name, store.ErrConflict)
		}
		if err != nil {
			return err
		}
		for i, c := range r.TagConfigs {
			cid, err := s.insertTagConfig(ctx, tx, id, i, c)
			if err != nil {
				return err
			}
			ids = append(ids, cid)
		}
		return nil
	})
	if err != nil {
		return wrapOp(op, err)
	}
	r.ID, r.PipelineID, r.CreatedAt, r.UpdatedAt = id, p.ID, created, updated
	for i, c := range r.TagConfigs {
		c.ID, c.RepositoryID = ids[i], id
	}
	return nil
}

// GetImageRepository returns a repository by namespace and name.
func (s *Store) GetImageRepository(ctx context.Context, namespace, name string) (*store.ImageRepository, error) {
	op := "get image repository " + namespace + "/" + name
	r, err := s.loadImageRepo(ctx, s.r, ` WHERE r.namespace = ? AND r.name = ?`, namespace, name)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return r, nil
}

// ImageRepositoryByPipeline returns the repository that owns a pipeline.
func (s *Store) ImageRepositoryByPipeline(ctx context.Context, pipelineID string) (*store.ImageRepository, error) {
	op := "get image repository of pipeline " + pipelineID
	r, err := s.loadImageRepo(ctx, s.r, ` WHERE r.pipeline_id = ?`, pipelineID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return r, nil
}

// ListImageRepositories lists the repositories of a namespace ("" all).
func (s *Store) ListImageRepositories(ctx context.Context, namespace string) ([]*store.ImageRepository, error) {
	op := "list image repositories"
	var (
		cond string
		args []any
	)
	if namespace != "" {
		op += " of namespace " + namespace
		cond, args = ` WHERE r.namespace = ?`, []any{namespace}
	}
	list, err := s.loadImageRepos(ctx, s.r, cond, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return list, nil
}

// UpdateImageBuildConfig locks the repository, checks the given config ids
// against its own, then updates the kept configs (positions included),
// inserts the new ones, deletes the others and sets build_node and
// updated_at, and reads the repository back, all in one transaction.
func (s *Store) UpdateImageBuildConfig(ctx context.Context, id int64, buildNode string, configs []*store.ImageTagConfig,
	updatedAt time.Time) (*store.ImageRepository, error) {
	op := fmt.Sprintf("update build config of image repository %d", id)
	if err := checkTagConfigs(op, configs); err != nil {
		return nil, err
	}
	updated := orNow(updatedAt, s.nowUTC())
	var out *store.ImageRepository
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		var one int
		err := s.queryRow(ctx, tx, `SELECT 1 FROM image_repositories WHERE id = ?`+s.d.forUpdate, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound(op)
		}
		if err != nil {
			return err
		}
		rows, err := s.query(ctx, tx, `SELECT id FROM image_tag_configs WHERE repository_id = ? ORDER BY id`, id)
		if err != nil {
			return err
		}
		have, err := collect(rows, func(sc scanner) (int64, error) {
			var v int64
			err := sc.Scan(&v)
			return v, err
		})
		if err != nil {
			return err
		}
		keep := make(map[int64]bool, len(configs))
		for _, c := range configs {
			if c.ID == 0 {
				continue
			}
			if !slices.Contains(have, c.ID) {
				return invalid(op, fmt.Sprintf("tag config %d is not one of this repository's (%s)", c.ID, listIDs(have)))
			}
			if keep[c.ID] {
				return invalid(op, fmt.Sprintf("tag config %d is listed twice", c.ID))
			}
			keep[c.ID] = true
		}
		for _, old := range have {
			if !keep[old] {
				if _, err := s.exec(ctx, tx, `DELETE FROM image_tag_configs WHERE id = ?`, old); err != nil {
					return err
				}
			}
		}
		for i, c := range configs {
			if c.ID == 0 {
				if _, err := s.insertTagConfig(ctx, tx, id, i, c); err != nil {
					return err
				}
				continue
			}
			if _, err := s.exec(ctx, tx, `UPDATE image_tag_configs SET position = ?, code_repo_type = ?,
				code_repo_type_value = ?, docker_repo_tag = ?, dockerfile_location = ?, build_context_path = ?,
				is_active = ?, build_cache_enabled = ?, version_tagging = ? WHERE id = ?`,
				i, c.CodeRepoType, c.CodeRepoTypeValue, c.DockerRepoTag, c.DockerfileLocation, c.BuildContextPath,
				c.IsActive, c.BuildCacheEnabled, c.VersionTagging, c.ID); err != nil {
				return err
			}
		}
		if _, err := s.exec(ctx, tx, `UPDATE image_repositories SET build_node = ?, updated_at = ? WHERE id = ?`,
			buildNode, micros(updated), id); err != nil {
			return err
		}
		out, err = s.loadImageRepo(ctx, tx, ` WHERE r.id = ?`, id)
		return err
	})
	if err != nil {
		return nil, wrapOp(op, err)
	}
	return out, nil
}

// listIDs says which tag configs a repository has, for an error message.
func listIDs(ids []int64) string {
	if len(ids) == 0 {
		return "it has no tag configs"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	return "its tag configs: " + strings.Join(s, ", ")
}

// qualify prefixes each column of a comma-separated list with a table
// alias ("id, name" → "x.id, x.name").
func qualify(alias, cols string) string {
	parts := strings.Split(cols, ",")
	for i, c := range parts {
		parts[i] = alias + "." + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

// withExtra is a scanner that reads dest and then extra: a row scanner
// such as scanRun reads the leading columns, the caller's the rest.
type withExtra struct {
	sc    scanner
	extra []any
}

func (w withExtra) Scan(dest ...any) error {
	return w.sc.Scan(append(dest, w.extra...)...)
}

// ListImageBuilds pages through the runs of image repositories' pipelines
// (runs joined with image_repositories on the pipeline id), newest first.
func (s *Store) ListImageBuilds(ctx context.Context, f store.ImageBuildFilter) ([]*store.ImageBuildRun, int, error) {
	op := "list image builds"
	if f.Offset < 0 || f.Limit < 0 {
		return nil, 0, invalid(op, "offset and limit must not be negative")
	}
	limit := f.Limit
	switch {
	case limit == 0:
		limit = defaultImageBuilds
	case limit > maxImageBuilds:
		limit = maxImageBuilds
	}
	var (
		where []string
		args  []any
	)
	if f.Within != nil {
		if len(f.Within) == 0 {
			return []*store.ImageBuildRun{}, 0, nil
		}
		where = append(where, "i.namespace IN ("+strings.Repeat("?, ", len(f.Within)-1)+"?)")
		for _, ns := range f.Within {
			args = append(args, ns)
		}
	}
	if f.Namespace != "" {
		where = append(where, "i.namespace = ?")
		args = append(args, f.Namespace)
	}
	if f.RepoName != "" {
		where = append(where, "i.name = ?")
		args = append(args, f.RepoName)
	}
	from := ` FROM runs x JOIN image_repositories i ON i.pipeline_id = x.pipeline_id`
	if len(where) > 0 {
		from += " WHERE " + strings.Join(where, " AND ")
	}
	var total int
	if err := s.queryRow(ctx, s.r, `SELECT COUNT(*)`+from, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	// Run ids in byte order on both databases (PostgreSQL's default
	// collation is the locale's).
	byID := ` x.id DESC`
	if s.d.postgres {
		byID = ` x.id COLLATE "C" DESC`
	}
	page, pargs := s.d.page(limit, f.Offset)
	rows, err := s.query(ctx, s.r, `SELECT `+qualify("x", runCols)+`, i.id, i.namespace, i.name`+from+
		` ORDER BY x.created_at DESC,`+byID+page, append(args, pargs...)...)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	list, err := collect(rows, func(sc scanner) (*store.ImageBuildRun, error) {
		var b store.ImageBuildRun
		run, err := scanRun(withExtra{sc, []any{&b.RepositoryID, &b.Namespace, &b.RepoName}})
		if err != nil {
			return nil, err
		}
		b.Run = run
		return &b, nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	return list, total, nil
}
