package sqlstore

import (
	"context"
	"database/sql"
	"sync"
)

// maxCachedStmts bounds the statements each SQLite pool keeps prepared: the
// store has about 200 distinct query texts, and a few are built with a
// varying number of placeholders. Once it is full, other queries run
// unprepared: a statement is never closed while the store is open, so none
// can be closed under a query that is using it.
const maxCachedStmts = 256

// stmtCache keeps a pool's prepared statements by query text, on SQLite.
// SQLite compiles every statement it is given (parsing and planning were a
// fifth of the server's CPU), and modernc.org/sqlite keeps no cache of its
// own; PostgreSQL needs none, pgx caches prepared statements per connection.
//
// A *sql.Stmt is prepared on its pool and then, by database/sql, on each
// connection that runs it, once. Preparing takes a connection from the pool,
// so it is never done from inside a transaction, which already holds one
// (the writer pool has a single connection: that would wait forever): a
// statement first met in a transaction runs unprepared and is prepared in
// the background, for the next time.
type stmtCache struct {
	db *sql.DB

	mu      sync.Mutex
	byQuery map[string]*sql.Stmt
	pending map[string]bool // being prepared in the background
	closed  bool
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, byQuery: map[string]*sql.Stmt{}, pending: map[string]bool{}}
}

// lookup returns the prepared statement of query, or nil.
func (c *stmtCache) lookup(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byQuery[query]
}

// full reports whether no more statements are kept (the caller holds mu).
func (c *stmtCache) full() bool {
	return len(c.byQuery)+len(c.pending) >= maxCachedStmts
}

// get returns the prepared statement of query, preparing it if needed, or
// nil when the cache is full; the caller must hold no connection of the
// pool.
func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	st, full := c.byQuery[query], c.full()
	c.mu.Unlock()
	if st != nil || full {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return c.add(query, st), nil
}

// add keeps st for query and returns the statement to use: another
// goroutine's, if it prepared the same query first, or nil when the cache
// is full or closed (st is then closed).
func (c *stmtCache) add(query string, st *sql.Stmt) *sql.Stmt {
	c.mu.Lock()
	have := c.byQuery[query]
	keep := have == nil && !c.closed && len(c.byQuery) < maxCachedStmts
	if keep {
		c.byQuery[query] = st
	}
	c.mu.Unlock()
	if !keep {
		_ = st.Close() // used by nobody yet
		return have
	}
	return st
}

// prepareLater prepares query in the background (once at a time), for a
// caller that holds one of the pool's connections.
func (c *stmtCache) prepareLater(query string) {
	c.mu.Lock()
	if c.closed || c.pending[query] || c.byQuery[query] != nil || c.full() {
		c.mu.Unlock()
		return
	}
	c.pending[query] = true
	c.mu.Unlock()
	go func() {
		st, err := c.db.PrepareContext(context.Background(), query)
		c.mu.Lock()
		delete(c.pending, query)
		c.mu.Unlock()
		if err == nil {
			c.add(query, st)
		}
	}()
}

// close closes every statement; later adds close theirs at once.
func (c *stmtCache) close() {
	c.mu.Lock()
	c.closed = true
	var sts []*sql.Stmt
	for _, st := range c.byQuery {
		sts = append(sts, st)
	}
	clear(c.byQuery)
	c.mu.Unlock()
	for _, st := range sts {
		_ = st.Close()
	}
}

// cacheFor returns the statement cache that serves q and whether q is a
// transaction (nil: q runs its queries unprepared).
func (s *Store) cacheFor(q querier) (c *stmtCache, inTx bool) {
	if s.stmts == nil {
		return nil, false
	}
	switch q := q.(type) {
	case *sql.DB:
		return s.stmts[q], false
	case *sql.Tx:
		if db, ok := s.txPools.Load(q); ok {
			return s.stmts[db.(*sql.DB)], true
		}
	}
	return nil, false
}

// begin starts a transaction on db, recorded so that its queries find
// db's prepared statements; call the returned end when it is over.
func (s *Store) begin(ctx context.Context, db *sql.DB, opts *sql.TxOptions) (*sql.Tx, func(), error) {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	if s.stmts == nil {
		return tx, func() {}, nil
	}
	s.txPools.Store(tx, db)
	return tx, func() { s.txPools.Delete(tx) }, nil
}
