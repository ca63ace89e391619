/* The schema migrations embedded from sql/ at build time. */
#ifndef ORDERS_MIGRATIONS_H
#define ORDERS_MIGRATIONS_H

struct migration {
    int version;        /* PRAGMA user_version once this migration is applied */
    const char *name;   /* file name in sql/, for messages */
    const char *sql;
};

extern const struct migration migrations[];
extern const int migration_count;

#endif
