/* Unit tests of src/sha256.c and src/auth.c: digests, the tokens file and
 * its reload, and the Authorization header. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../src/auth.h"
#include "../../src/sha256.h"
#include "tap.h"

static char dir[256];
static char path[300];

static void write_file(const char *p, const char *content)
{
    FILE *f = fopen(p, "w");
    if (!f || fputs(content, f) < 0 || fclose(f) != 0) {
        perror(p);
        exit(99);
    }
}

static void sleep_past_recheck(void)
{
    /* The file is stat'ed at most once a second. */
    struct timespec ts = {1, 200 * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void hex_of(const char *s, char out[2 * SHA256_LEN + 1])
{
    sha256_hex(s, strlen(s), out);
}

static void test_sha256(void)
{
    char hex[2 * SHA256_LEN + 1];
    sha256_hex("", 0, hex);
    is_str(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha256 \"\"");
    sha256_hex("abc", 3, hex);
    is_str(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
           "sha256 \"abc\"");
    const char *v56 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(v56, strlen(v56), hex);
    is_str(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
           "sha256 of the 448-bit NIST message");
    const char *v112 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    sha256_hex(v112, strlen(v112), hex);
    is_str(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
           "sha256 of the 896-bit NIST message");
    char *million = malloc(1000000);
    if (!million)
        exit(99);
    memset(million, 'a', 1000000);
    sha256_hex(million, 1000000, hex);
    is_str(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
           "sha256 of one million 'a'");
    free(million);

    /* Padding boundaries around one and two blocks. */
    static const struct {
        size_t n;
        const char *hex;
    } xs[] = {
        {55, "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072"},
        {56, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e"},
        {63, "75220b47218278e656f2013bb8f0c455a25eaf01e86c64924e9d48d89776d6f2"},
        {64, "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c"},
        {65, "9537c5fdf120482f7d58d25e9ed583f52c02b4e304ea814db1633ad565aed7e9"},
        {119, "000b48d4edf0fa7bee3c6236ecd2785baa5db4eeb8bb54341b029e0d9fa5fb0c"},
        {120, "13f05a0b594787f5ecd315edc96141bd3243203d1b7d4f0836f37308b276ba98"},
        {128, "24da1b81d0b16df6428eee73c69fcb2a93c76bc6df706f0c6670fe6bfe800464"},
    };
    char x[128];
    memset(x, 'x', sizeof x);
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        sha256_hex(x, xs[i].n, hex);
        is_str(hex, xs[i].hex, "sha256 of %zu 'x'", xs[i].n);
    }

    uint8_t raw[SHA256_LEN];
    sha256("abc", 3, raw);
    ok(raw[0] == 0xba && raw[1] == 0x78 && raw[31] == 0xad, "sha256 raw digest bytes");
}

static void test_load(void)
{
    char lower[65], upper[65], err[512];
    hex_of("hashed-lower", lower);
    hex_of("hashed-upper", upper);
    for (char *p = upper; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    char content[1024];
    snprintf(content, sizeof content,
             "# tokens for the orders service\n"
             "\n"
             "  token-one  \n"
             "\ttab-token\t\n"
             "sha256:%s\n"
             "   sha256:%s   \n"
             "   # an indented comment\n"
             "      \n"
             "crlf-token\r\n"
             "tok en\n"
             "token#hash\n"
             "last-line-without-newline",
             lower, upper);
    write_file(path, content);

    err[0] = '\0';
    struct auth *a = auth_load(path, err, sizeof err);
    ok(a != NULL, "auth_load reads a file of raw and hashed tokens");
    if (!a) {
        diag("  err: %s", err);
        return;
    }
    const char *good[] = {"token-one", "tab-token", "hashed-lower", "hashed-upper",
                          "crlf-token", "tok en", "token#hash", "last-line-without-newline"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ok(auth_token_valid(a, good[i]), "token '%s' accepted", good[i]);
    char sha_line[80];
    snprintf(sha_line, sizeof sha_line, "sha256:%s", lower);
    const char *bad[] = {"", "token-on", "token-one ", " token-one", "TOKEN-ONE", "token-one\n",
                         "crlf-token\r", "tok", "token", "# tokens for the orders service",
                         "#", "an indented comment", lower, sha_line, "hashed",
                         "last-line-without-newlin"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ok(!auth_token_valid(a, bad[i]), "token '%s' refused", bad[i]);
    auth_free(a);
    auth_free(NULL);    /* like free(NULL); a crash here ends the run before its plan */

    /* Empty file: loads, accepts nothing. */
    write_file(path, "# nobody yet\n\n");
    a = auth_load(path, err, sizeof err);
    ok(a != NULL, "auth_load of a file with only comments");
    if (a) {
        ok(!auth_token_valid(a, ""), "empty token refused by an empty set");
        ok(!auth_token_valid(a, "# nobody yet"), "comment refused by an empty set");
        auth_free(a);
    }

    /* Malformed hashes. */
    char sixty_three[64], sixty_five[66], non_hex[65];
    memcpy(sixty_three, lower, 63);
    sixty_three[63] = '\0';
    snprintf(sixty_five, sizeof sixty_five, "%sa", lower);
    memcpy(non_hex, lower, 65);
    non_hex[10] = 'g';
    const char *malformed[] = {sixty_three, sixty_five, non_hex, "abc", "", " "};
    const char *names[] = {"63 hex digits", "65 hex digits", "a 'g' among 64 digits", "abc",
                           "nothing", "a space"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        snprintf(content, sizeof content, "good-token\nsha256:%s\n", malformed[i]);
        write_file(path, content);
        err[0] = '\0';
        a = auth_load(path, err, sizeof err);
        ok(a == NULL && err[0] != '\0', "auth_load refuses 'sha256:' with %s, with a message",
           names[i]);
        if (a) {
            char literal[80];
            snprintf(literal, sizeof literal, "sha256:%s", malformed[i]);
            literal[strcspn(literal, " ")] = '\0';
            diag("  loaded anyway; the literal token '%s' is %s", literal,
                 auth_token_valid(a, literal) ? "ACCEPTED" : "refused");
            auth_free(a);
        } else {
            ok(strstr(err, "line 2") != NULL, "the message names line 2: %s", err);
        }
    }

    /* Missing file. */
    char missing[320];
    snprintf(missing, sizeof missing, "%s/no-such-file", dir);
    err[0] = '\0';
    a = auth_load(missing, err, sizeof err);
    ok(a == NULL, "auth_load of a missing file returns NULL");
    ok(strstr(err, "no-such-file") != NULL, "the message names the file: %s", err);
    if (a)
        auth_free(a);
}

static void test_reload(void)
{
    char err[512];
    write_file(path, "old-token\nkept-token\n");
    struct auth *a = auth_load(path, err, sizeof err);
    ok(a != NULL, "reload: first load");
    if (!a) {
        diag("  err: %s", err);
        return;
    }
    ok(auth_token_valid(a, "old-token"), "reload: old token accepted before the change");

    /* Rewritten in place. */
    write_file(path, "new-token\nkept-token\n# a longer file than before\n");
    sleep_past_recheck();
    ok(!auth_token_valid(a, "old-token"), "reload: old token refused after the rewrite");
    ok(auth_token_valid(a, "new-token"), "reload: new token accepted after the rewrite");
    ok(auth_token_valid(a, "kept-token"), "reload: unchanged token still accepted");

    /* Replaced by rename, the way editors and config tools write. */
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s/tokens.new", dir);
    char hex[65], line[80];
    hex_of("renamed-token", hex);
    snprintf(line, sizeof line, "sha256:%s\n", hex);
    write_file(tmp, line);
    if (rename(tmp, path) != 0)
        perror("rename");
    sleep_past_recheck();
    ok(auth_token_valid(a, "renamed-token"), "reload: hashed token of a renamed-in file accepted");
    ok(!auth_token_valid(a, "new-token"), "reload: token of the replaced file refused");

    /* A bad edit keeps the previous tokens (src/auth.c promises this). */
    write_file(path, "sha256:123\n");
    sleep_past_recheck();
    ok(auth_token_valid(a, "renamed-token"), "reload: a malformed file keeps the previous tokens");
    ok(!auth_token_valid(a, "sha256:123"), "reload: the malformed line is not a token");

    unlink(path);
    sleep_past_recheck();
    ok(auth_token_valid(a, "renamed-token"), "reload: a vanished file keeps the previous tokens");

    write_file(path, "back-token\n");
    sleep_past_recheck();
    ok(auth_token_valid(a, "back-token"), "reload: a file that comes back is read again");
    ok(!auth_token_valid(a, "renamed-token"), "reload: ... and replaces the kept tokens");
    auth_free(a);
}

static void test_bearer(void)
{
    const char *h = "Bearer abc.def";
    const char *t = auth_bearer_token(h);
    is_str(t, "abc.def", "Bearer abc.def");
    ok(t == h + 7, "the token points into the header");
    is_str(auth_bearer_token("bearer x"), "x", "bearer x (scheme is case-insensitive)");
    is_str(auth_bearer_token("BEARER x"), "x", "BEARER x");
    is_str(auth_bearer_token("Bearer   x"), "x", "Bearer with several spaces");
    is_str(auth_bearer_token("Basic x"), NULL, "Basic x");
    is_str(auth_bearer_token("Bearer "), NULL, "Bearer and a space only");
    is_str(auth_bearer_token("Bearer    "), NULL, "Bearer and spaces only");
    is_str(auth_bearer_token("Bearer"), NULL, "Bearer alone");
    is_str(auth_bearer_token("Bearerx"), NULL, "Bearerx");
    is_str(auth_bearer_token(""), NULL, "empty header");
    is_str(auth_bearer_token(NULL), NULL, "no header");
}

int main(void)
{
    const char *tmpdir = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/auth_test.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 99;
    }
    snprintf(path, sizeof path, "%s/tokens", dir);

    test_sha256();
    test_load();
    test_reload();
    test_bearer();

    unlink(path);
    rmdir(dir);
    return done_testing();
}
