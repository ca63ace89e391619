/* The schema migrations embedded from sql/ at build time. */
#ifndef ORDERS_MIGRATIONS_H
#define ORDERS_MIGRATIONS_H

struct migration {
    int version;        /* the schema's version once this migration is applied */
    const char *name;   /* file name in sql/ or sql/pg/, for messages */
    const char *sql;
};

/* SQLite's, from sql/ */
extern const struct migration migrations[];
extern const int migrations_count;

/* PostgreSQL's, from sql/pg/ (built with PostgreSQL only) */
extern const struct migration pg_migrations[];
extern const int pg_migrations_count;

#endif
