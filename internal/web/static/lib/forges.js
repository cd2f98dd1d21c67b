// What the pages know of forges and of the API's input rules, in one place:
// the credential kinds with the host and user name the server fills in when
// they are left empty (internal/secret), the image build clients with their
// default hosts and webhook providers (internal/imagebuild), and the
// patterns the API checks ids and names against (internal/check). A page
// imports these instead of spelling them again.

// Credential kinds, in the order the form offers them.
export const CREDENTIAL_KINDS = {
  github: {label: 'GitHub', host: 'github.com', username: 'x-access-token'},
  gitlab: {label: 'GitLab', host: 'gitlab.com', username: 'oauth2'},
  bitbucket: {label: 'Bitbucket', host: 'bitbucket.org', username: 'x-token-auth'},
  gitea: {label: 'Gitea', host: '', username: ''},
  basic: {label: 'Basic (user and password or token)', host: '', username: ''},
  ssh: {label: 'SSH private key', host: '', username: 'git'},
};

// Image build clients (the seed's code_repo_client): the forge's default
// host ('' : required) and the webhook provider that delivers its pushes.
export const IMAGE_CLIENTS = {
  GitHub: {host: 'github.com', provider: 'github'},
  GitLab: {host: 'gitlab.com', provider: 'gitlab'},
  Bitbucket: {host: 'bitbucket.org', provider: 'bitbucket'},
  Gitea: {host: '', provider: 'gitea'},
  Simple: {host: null, provider: null},
};

// Webhook providers the server accepts (/api/v1/webhooks/{provider}/…).
export const WEBHOOK_PROVIDERS = ['github', 'gitlab', 'gitea', 'bitbucket'];

// Input patterns, as HTML pattern attributes.
export const PATTERNS = {
  secretName: '^[A-Za-z_][A-Za-z0-9_]{0,127}$',
  projectId: '^[A-Za-z0-9][A-Za-z0-9._\\-]{0,99}$',
  pipelineId: '^pl_[a-z0-9]{10,40}$',
  imageName: '^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$',
  imageTag: '^[A-Za-z0-9_][A-Za-z0-9_.\\-]{0,127}$',
  commit: '^([0-9a-fA-F]{40}|[0-9a-fA-F]{64})$',
};
