// What the pages know of forges and of the API's input rules, in one place:
// the credential kinds with the host and user name the server fills in when
// they are left empty (internal/secret), the image build clients with their
// default hosts and webhook providers (internal/imagebuild), and the
// sign-in provider kinds with what their form says of each (internal/sso),
// and the patterns the API checks ids and names against (internal/check). A page
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

// Sign-in provider kinds (internal/sso), in the order the form offers them:
// the public service's host (url empty), where the OAuth application is
// registered, what url means, whether the
// client secret is required, the default scopes, what allowedOrgs names,
// and whether the kind connects forge accounts (oidc signs in only).
export const PROVIDER_KINDS = {
  github: {label: 'GitHub', host: 'github.com', connect: true, secretRequired: true, orgs: 'organisations',
    app: 'an OAuth App (Settings → Developer settings → OAuth Apps), with the callback URL as its authorization callback URL',
    url: 'Empty for github.com; for GitHub Enterprise Server its address, such as https://github.example.com',
    scopes: 'read:user user:email, and read:org with allowed organisations'},
  gitlab: {label: 'GitLab', host: 'gitlab.com', connect: true, orgs: 'groups (full paths)',
    app: 'an application (a group\'s or your Settings → Applications, or Admin → Applications) with the callback URL as its redirect URI',
    url: 'Empty for gitlab.com; for a self-managed GitLab its address, such as https://gitlab.example.com',
    scopes: 'read_user, and read_api with allowed groups'},
  gitea: {label: 'Gitea', connect: true, urlRequired: true, orgs: 'organisations',
    app: 'an OAuth2 application (Settings → Applications) with the callback URL as its redirect URI',
    url: 'Required: Gitea\'s base URL, such as https://gitea.example.com',
    scopes: 'read:user, and read:organization with allowed organisations; add openid to sign in with OpenID Connect'},
  bitbucket: {label: 'Bitbucket', host: 'bitbucket.org', connect: true, secretRequired: true, orgs: 'workspaces',
    app: 'an OAuth consumer (Workspace settings → OAuth consumers) with the callback URL, permissions Account and Email (Workspace membership for allowed workspaces; Repositories admin, Webhooks and Pull requests to connect accounts)',
    url: 'Empty for bitbucket.org',
    scopes: 'none: Bitbucket grants the permissions set on the consumer'},
  oidc: {label: 'OpenID Connect', connect: false, urlRequired: true, orgs: 'groups (the ID token\'s groups claim)',
    app: 'a client (authorization code flow) at the identity provider with the callback URL as its redirect URI',
    url: 'Required: the issuer, such as https://accounts.example.com (its /.well-known/openid-configuration is read)',
    scopes: 'openid profile email; scopes given must include openid (add groups if the provider needs it for allowed groups)'},
};

// Input patterns, as HTML pattern attributes.
export const PATTERNS = {
  secretName: '^[A-Za-z_][A-Za-z0-9_]{0,127}$',
  projectId: '^[A-Za-z0-9][A-Za-z0-9._\\-]{0,99}$',
  pipelineId: '^pl_[a-z0-9]{10,40}$',
  imageName: '^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$',
  imageTag: '^[A-Za-z0-9_][A-Za-z0-9_.\\-]{0,127}$',
  commit: '^([0-9a-fA-F]{40}|[0-9a-fA-F]{64})$',
  providerName: '^[a-z0-9][a-z0-9_\\-]{0,62}$',
};
