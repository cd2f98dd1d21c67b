-- Projects as resources and the access boundary, their members (users and
-- teams, each with a role) and teams. Same shape for both databases (the Go
-- code is shared); times are Unix microseconds (UTC).

-- +goose Up
CREATE TABLE projects (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL DEFAULT '',
    description TEXT    NOT NULL DEFAULT '',
    created_by  TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER  NOT NULL,
    updated_at  INTEGER  NOT NULL
) STRICT;

CREATE TABLE teams (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    description TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER  NOT NULL
) STRICT;

-- A team's members. Removing a user or a team removes its rows (the store
-- does it in the same transaction; the columns are not foreign keys so that
-- both databases behave alike).
CREATE TABLE team_members (
    team_id    TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    created_at INTEGER  NOT NULL,
    PRIMARY KEY (team_id, user_id)
) STRICT;
CREATE INDEX team_members_user ON team_members (user_id);

-- kind is user or team; member_id the user's or the team's id; role one of
-- viewer, developer, maintainer, owner.
CREATE TABLE project_members (
    project_id TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    member_id  TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    created_at INTEGER  NOT NULL,
    updated_at INTEGER  NOT NULL,
    PRIMARY KEY (project_id, kind, member_id)
) STRICT;
CREATE INDEX project_members_member ON project_members (kind, member_id);

-- Every project id already in use becomes a project, so that nothing stored
-- before loses its home: the pipelines', the project secrets', the limited
-- credentials' and the image repositories' namespaces. Site admins reach
-- them all; an admin then gives others roles.
INSERT INTO projects (id, name, created_at, updated_at)
SELECT id, id, MIN(t), MIN(t) FROM (
    SELECT project_id AS id, created_at AS t FROM pipelines
    UNION ALL SELECT scope_id, created_at FROM secrets WHERE scope = 'project'
    UNION ALL SELECT project_id, created_at FROM credentials WHERE project_id <> ''
    UNION ALL SELECT namespace, created_at FROM image_repositories
) used WHERE id <> '' GROUP BY id;

-- +goose Down
DROP TABLE project_members;
DROP TABLE team_members;
DROP TABLE teams;
DROP TABLE projects;
