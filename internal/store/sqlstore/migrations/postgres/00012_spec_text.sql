-- The definition as its author wrote it (YAML or JSON text, comments and
-- layout included) when it was saved as text: the web UI's editor shows it
-- again. Empty for versions saved as a spec object. Same for both databases.

-- +goose Up
ALTER TABLE spec_versions ADD COLUMN source_text TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE spec_versions DROP COLUMN source_text;
