// Package dbcopy copies the rows of SQLite tables into the tables of the same name and
// schema in a PostgreSQL database: moving a single recorder's state (data_dir's
// recorder.db and crypto.db) into the database of a fleet. Columns are matched by name and
// values converted to the target column's type (SQLite keeps booleans as integers and
// text as bytes at times); identity columns' sequences are moved past the copied ids.
package dbcopy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Tables lists src's (SQLite) tables that keep says to copy, parents before the tables
// whose foreign keys point at them, so that rows can be inserted in that order.
func Tables(ctx context.Context, src *sql.DB, keep func(name string) bool) ([]string, error) {
	rows, err := src.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list tables: %w", err)
		}
		if keep(n) {
			names = append(names, n)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	parents := map[string][]string{}
	for _, n := range names {
		fks, err := src.QueryContext(ctx, `SELECT DISTINCT "table" FROM pragma_foreign_key_list(?)`, n)
		if err != nil {
			return nil, fmt.Errorf("foreign keys of %s: %w", n, err)
		}
		for fks.Next() {
			var p string
			if err := fks.Scan(&p); err != nil {
				fks.Close()
				return nil, fmt.Errorf("foreign keys of %s: %w", n, err)
			}
			if p != n && slices.Contains(names, p) {
				parents[n] = append(parents[n], p)
			}
		}
		fks.Close()
	}
	var order []string
	state := map[string]int{} // 1: visiting, 2: done
	var visit func(n string) error
	visit = func(n string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("tables refer to each other in a circle through %s", n)
		case 2:
			return nil
		}
		state[n] = 1
		for _, p := range parents[n] {
			if err := visit(p); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, n)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// ErrNotEmpty is returned by CheckEmpty for a target that has rows already.
var ErrNotEmpty = errors.New("the target database is not empty")

// CheckEmpty fails with ErrNotEmpty naming the first of tables that has a row in dst.
func CheckEmpty(ctx context.Context, dst *sql.DB, tables []string) error {
	for _, t := range tables {
		var any bool
		if err := dst.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+quote(t)+`)`).Scan(&any); err != nil {
			return fmt.Errorf("look into %s in the target: %w", t, err)
		}
		if any {
			return fmt.Errorf("%w: table %s has rows", ErrNotEmpty, t)
		}
	}
	return nil
}

// Copy copies every row of table from src (SQLite) into the same table in tx
// (PostgreSQL) and returns how many. set gives columns a value of its own (the crypto
// store's account id); columns of src that dst lacks fail the copy.
func Copy(ctx context.Context, src *sql.DB, tx *sql.Tx, table string, set map[string]any) (int, error) {
	types, err := columnTypes(ctx, tx, table)
	if err != nil {
		return 0, err
	}
	rows, err := src.QueryContext(ctx, `SELECT * FROM `+quote(table))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", table, err)
	}
	quoted := make([]string, len(cols))
	params := make([]string, len(cols))
	for i, c := range cols {
		if _, ok := types[c]; !ok {
			return 0, fmt.Errorf("column %s.%s is not in the target (is it of another version?)", table, c)
		}
		quoted[i], params[i] = quote(c), "$"+strconv.Itoa(i+1)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO `+quote(table)+` (`+strings.Join(quoted, ", ")+`) VALUES (`+strings.Join(params, ", ")+`)`)
	if err != nil {
		return 0, fmt.Errorf("prepare the copy of %s: %w", table, err)
	}
	defer stmt.Close()
	n := 0
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, fmt.Errorf("read %s: %w", table, err)
		}
		args := make([]any, len(cols))
		for i, c := range cols {
			if v, ok := set[c]; ok {
				args[i] = v
				continue
			}
			if args[i], err = convert(vals[i], types[c]); err != nil {
				return n, fmt.Errorf("%s.%s: %w", table, c, err)
			}
		}
		if _, err := stmt.ExecContext(ctx, args...); err != nil {
			return n, fmt.Errorf("copy a row of %s: %w", table, err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("read %s: %w", table, err)
	}
	return n, nil
}

// columnTypes returns the data types of table's columns in the target.
func columnTypes(ctx context.Context, tx *sql.Tx, table string) (map[string]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1`, table)
	if err != nil {
		return nil, fmt.Errorf("columns of %s in the target: %w", table, err)
	}
	defer rows.Close()
	types := map[string]string{}
	for rows.Next() {
		var c, t string
		if err := rows.Scan(&c, &t); err != nil {
			return nil, fmt.Errorf("columns of %s in the target: %w", table, err)
		}
		types[c] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("columns of %s in the target: %w", table, err)
	}
	if len(types) == 0 {
		return nil, fmt.Errorf("table %s is not in the target", table)
	}
	return types, nil
}

// convert turns a value read from SQLite into one for a PostgreSQL column of type typ.
func convert(v any, typ string) (any, error) {
	switch typ {
	case "boolean":
		switch b := v.(type) {
		case int64:
			return b != 0, nil
		case bool, nil:
			return b, nil
		}
		return nil, fmt.Errorf("%T is not a boolean", v)
	case "bytea":
		if s, ok := v.(string); ok {
			return []byte(s), nil
		}
	case "text", "character", "character varying", "jsonb", "json":
		if b, ok := v.([]byte); ok {
			return string(b), nil
		}
	}
	return v, nil
}

// ResetIdentities moves the sequence of every identity (or serial) column of tables past
// the largest id copied, so that the next row the recorder inserts gets a new id.
func ResetIdentities(ctx context.Context, tx *sql.Tx, tables []string) error {
	for _, t := range tables {
		rows, err := tx.QueryContext(ctx, `SELECT column_name FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')`, t)
		if err != nil {
			return fmt.Errorf("identity columns of %s: %w", t, err)
		}
		var cols []string
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				rows.Close()
				return fmt.Errorf("identity columns of %s: %w", t, err)
			}
			cols = append(cols, c)
		}
		rows.Close()
		for _, c := range cols {
			if _, err := tx.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence($1, $2), COALESCE((SELECT MAX(`+quote(c)+`) FROM `+quote(t)+`), 0) + 1, false)`,
				quote(t), c); err != nil {
				return fmt.Errorf("move the sequence of %s.%s: %w", t, c, err)
			}
		}
	}
	return nil
}

// quote quotes an identifier for both SQLite and PostgreSQL.
func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }
