/*
 * test_report.c — the report writers and the spec-line grammar
 * (cli/report.c): configs parse and reject bad items, Pareto marking per
 * group, JSON is well-formed (checked by a strict recursive-descent
 * validator below) and escapes text, the SVG holds one marker per run and
 * the frontier polyline through exactly the non-dominated points, output
 * is deterministic, and files are written by temp + rename with overwrite
 * refused unless forced.
 *
 * cli/ is not part of libkvq.a, so the writer source is compiled into this
 * test directly (it depends on kvq.h and libc only).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/report.c"

/* ---- a strict JSON validator (RFC 8259 grammar, no extensions) ------------- */

typedef struct { const char *p; int depth; } jv;

static void ws(jv *j)
{
    while (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r') j->p++;
}

static int value(jv *j);

static int string(jv *j)
{
    if (*j->p++ != '"') return 0;
    while (*j->p != '"') {
        unsigned char c = (unsigned char)*j->p++;
        if (c < 0x20 || c == 0) return 0;
        if (c == '\\') {
            char e = *j->p++;
            if (e == 'u') {
                for (int i = 0; i < 4; i++, j->p++)
                    if (!strchr("0123456789abcdefABCDEF", *j->p) || !*j->p) return 0;
            } else if (!strchr("\"\\/bfnrt", e) || !e) {
                return 0;
            }
        }
    }
    j->p++;
    return 1;
}

static int number(jv *j)
{
    const char *s = j->p;
    if (*j->p == '-') j->p++;
    if (*j->p == '0') j->p++;
    else if (*j->p >= '1' && *j->p <= '9') while (*j->p >= '0' && *j->p <= '9') j->p++;
    else return 0;
    if (*j->p == '.') {
        j->p++;
        if (!(*j->p >= '0' && *j->p <= '9')) return 0;
        while (*j->p >= '0' && *j->p <= '9') j->p++;
    }
    if (*j->p == 'e' || *j->p == 'E') {
        j->p++;
        if (*j->p == '+' || *j->p == '-') j->p++;
        if (!(*j->p >= '0' && *j->p <= '9')) return 0;
        while (*j->p >= '0' && *j->p <= '9') j->p++;
    }
    return j->p > s;
}

static int members(jv *j, char close, int keyed)
{
    j->p++;
    ws(j);
    if (*j->p == close) return j->p++, 1;
    for (;;) {
        ws(j);
        if (keyed) {
            if (!string(j)) return 0;
            ws(j);
            if (*j->p++ != ':') return 0;
        }
        if (!value(j)) return 0;
        ws(j);
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        return *j->p++ == close;
    }
}

static int value(jv *j)
{
    ws(j);
    if (++j->depth > 64) return 0;
    int ok;
    if (*j->p == '{') ok = members(j, '}', 1);
    else if (*j->p == '[') ok = members(j, ']', 0);
    else if (*j->p == '"') ok = string(j);
    else if (!strncmp(j->p, "true", 4)) ok = (j->p += 4, 1);
    else if (!strncmp(j->p, "false", 5)) ok = (j->p += 5, 1);
    else if (!strncmp(j->p, "null", 4)) ok = (j->p += 4, 1);
    else ok = number(j);
    j->depth--;
    return ok;
}

static int json_valid(const char *s)
{
    jv j = {s, 0};
    if (!value(&j)) return 0;
    ws(&j);
    return *j.p == 0;
}

static void test_validator_can_fail(void **state)
{
    (void)state;
    assert_true(json_valid("{\"a\": [1, 2.5e-3, -0, null, true, \"x\\\"\"]}"));
    assert_false(json_valid("{\"a\": [1, 2,]}"));
    assert_false(json_valid("{\"a\": nan}"));
    assert_false(json_valid("{\"a\" 1}"));
    assert_false(json_valid("{\"a\": \"tab\there\"}"));
    assert_false(json_valid("[1] x"));
}

/* ---- configs --------------------------------------------------------------- */

static void test_config_parse(void **state)
{
    (void)state;
    report_config c;
    char err[256];
    assert_int_equal(report_config_parse("  w=q4_0 kv=rtn:bits=8,mode=asym window=4 page=8 ", &c, err, sizeof err), 0);
    assert_string_equal(c.w, "q4_0");
    assert_string_equal(c.k, "rtn:bits=8,mode=asym");
    assert_string_equal(c.v, "rtn:bits=8,mode=asym");
    assert_int_equal(c.window, 4);
    assert_int_equal(c.page, 8);
    assert_string_equal(c.label, "w=q4_0 kv=rtn:bits=8,mode=asym window=4 page=8");
    assert_true(report_config_weights_changed(&c));
    report_config_free(&c);
    assert_int_equal(report_config_parse("tensor=blk\\.0\\..*=q8_0 act=q8_0 label=mixed", &c, err, sizeof err), 0);
    assert_int_equal(c.n_tensor, 1);
    assert_string_equal(c.tensor[0], "blk\\.0\\..*=q8_0");
    assert_string_equal(c.act, "q8_0");
    assert_string_equal(c.label, "mixed");
    assert_null(c.w);
    assert_int_equal(c.window, REPORT_DEFAULT_KV_WINDOW);
    report_config_free(&c);
    static const char *const bad[] = {"q4_0", "zz=1", "page=0", "window=-1", "w=", "tensor=noequals", "page=12x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        assert_int_equal(report_config_parse(bad[i], &c, err, sizeof err), -1);
        assert_true(strlen(err) > 0);
    }
    assert_int_equal(report_config_parse("zz=1", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown key 'zz'"));
}

/* ---- rows ------------------------------------------------------------------- */

#define N_ROWS 6
static report_row g_rows[N_ROWS];

/* label, weights?, kv?, x, mean KLD */
static void make_row(report_row *r, const char *cfg, double x, double kld)
{
    char err[128];
    assert_int_equal(report_config_parse(cfg, &r->cfg, err, sizeof err), 0);
    memset(&r->res, 0, sizeof r->res);
    r->res.s.n = 1000;
    r->res.s.kld_mean = kld;
    r->res.s.kld_unc = kld / 20;
    r->res.s.ppl_q = 7.0 + kld;
    r->res.s.ppl_base = 7.0;
    r->res.ctx = 512;
    r->res.n_chunks = 4;
    r->res.bpw_q = x;
    r->res.kv_bits_per_value = x;
    r->x = x;
}

static int setup_rows(void **state)
{
    (void)state;
    make_row(&g_rows[0], "w=f32 label=f32", 32, 0);
    make_row(&g_rows[1], "w=q8_0", 8.5, 1e-3);
    make_row(&g_rows[2], "w=q4_0", 4.5, 0.07);
    make_row(&g_rows[3], "w=rtn:bits=4 label=rtn4\"quoted\\", 4.5, 0.09); /* dominated by q4_0 */
    make_row(&g_rows[4], "kv=rtn:bits=8", 9.0, 2e-3);                 /* kv group: own frontier */
    make_row(&g_rows[5], "act=q8_0", 8.5, 3e-3);                      /* act group */
    /* "w=f32" changes weights in the grammar; make the baseline a base row. */
    free(g_rows[0].cfg.w);
    g_rows[0].cfg.w = NULL;
    report_mark_pareto(g_rows, N_ROWS);
    return 0;
}

static int teardown_rows(void **state)
{
    (void)state;
    for (int i = 0; i < N_ROWS; i++) report_config_free(&g_rows[i].cfg);
    return 0;
}

static void test_pareto(void **state)
{
    (void)state;
    assert_int_equal(g_rows[0].group, REPORT_GROUP_BASE);
    assert_int_equal(g_rows[1].group, REPORT_GROUP_WEIGHTS);
    assert_int_equal(g_rows[4].group, REPORT_GROUP_KV);
    assert_int_equal(g_rows[0].pareto, 1);
    assert_int_equal(g_rows[1].pareto, 1);
    assert_int_equal(g_rows[2].pareto, 1);
    assert_int_equal(g_rows[3].pareto, 0);
    /* kv row at 9.0 bits is worse than w=q8_0 on both axes, but the groups
     * are not compared: it stays on the KV frontier. */
    assert_int_equal(g_rows[4].pareto, 1);
    assert_int_equal(g_rows[5].group, REPORT_GROUP_ACT);
    assert_int_equal(g_rows[5].pareto, 1);
    assert_string_equal(report_group_name(REPORT_GROUP_ACT), "act");
    kvq_eval_result r = {.bpw_q = 4.5, .kv_bits_per_value = 9, .act_bits_per_value = 8.5};
    assert_true(report_config_x(&g_rows[2].cfg, &r) == 4.5);
    assert_true(report_config_x(&g_rows[4].cfg, &r) == 9);
    assert_true(report_config_x(&g_rows[5].cfg, &r) == 8.5);
    assert_true(report_config_x(&g_rows[0].cfg, &r) == 32);
}

static void test_json(void **state)
{
    (void)state;
    report_meta m = {.model_path = "models/x.bin", .text_path = "t\\ext.txt", .model = NULL, .threads = 2};
    report_buf b = {0};
    report_json(&b, &m, g_rows, N_ROWS);
    assert_false(b.oom);
    assert_true(json_valid(b.p));
    assert_non_null(strstr(b.p, "\"schema\": \"kvq.report/1\""));
    assert_non_null(strstr(b.p, "\"label\": \"rtn4\\\"quoted\\\\\""));
    assert_non_null(strstr(b.p, "\"path\": \"t\\\\ext.txt\""));
    assert_non_null(strstr(b.p, "\"group\": \"kv\", \"pareto\": true"));
    assert_non_null(strstr(b.p, "\"mean\": 0.07, "));
    /* Non-finite numbers become null and the document stays valid. */
    g_rows[2].res.s.ppl_ratio = INFINITY;
    report_buf b2 = {0};
    report_json(&b2, &m, g_rows, N_ROWS);
    g_rows[2].res.s.ppl_ratio = 0;
    assert_true(json_valid(b2.p));
    assert_non_null(strstr(b2.p, "\"ratio\": null"));
    rb_free(&b);
    rb_free(&b2);
}

static size_t count(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void test_svg(void **state)
{
    (void)state;
    report_meta m = {.model_path = "models/x.bin", .text_path = "t.txt"};
    report_buf a = {0}, b = {0};
    report_svg(&a, &m, g_rows, N_ROWS);
    report_svg(&b, &m, g_rows, N_ROWS);
    assert_false(a.oom);
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.p, b.p, a.n); /* deterministic */
    assert_true(!strncmp(a.p, "<?xml", 5));
    assert_true(!strcmp(a.p + a.n - 7, "</svg>\n"));
    assert_int_equal(count(a.p, "<circle"), N_ROWS);
    /* Three frontiers: weights (q4_0, q8_0, f32), KV (kv8, f32), act (a8, f32). */
    assert_int_equal(count(a.p, "<polyline"), 3);
    assert_non_null(strstr(a.p, "<polyline fill=\"none\" stroke=\"#9467bd\""));
    const char *red = strstr(a.p, "<polyline fill=\"none\" stroke=\"#d62728\"");
    assert_non_null(red);
    const char *pts = strstr(red, "points=\"") + 8;
    size_t len = strcspn(pts, "\"");
    char line[256];
    assert_true(len < sizeof line);
    memcpy(line, pts, len);
    line[len] = 0;
    assert_int_equal(count(line, ",") , 3); /* three vertices: q4_0, q8_0, f32 */
    /* The dominated point is drawn but not on the polyline: blue fill. */
    assert_int_equal(count(a.p, "fill=\"#1f77b4\""), 1);
    /* Labels are XML-escaped. */
    assert_non_null(strstr(a.p, "rtn4&quot;quoted\\"));
    assert_non_null(strstr(a.p, "f32 (KL = 0)"));
    rb_free(&a);
    rb_free(&b);
}

static void test_markdown(void **state)
{
    (void)state;
    report_meta m = {.model_path = "models/x.bin", .text_path = "t.txt"};
    report_buf b = {0};
    report_markdown(&b, &m, g_rows, N_ROWS);
    assert_int_equal(count(b.p, "\n| `"), N_ROWS);
    assert_non_null(strstr(b.p, "| `w=q4_0` | 4.500 |"));
    assert_non_null(strstr(b.p, "(pareto.svg)"));
    rb_free(&b);
}

static void test_write_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/kvq-test-report-XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/out.json", dir);
    report_buf b = {0};
    rb_printf(&b, "{\"x\": %d}\n", 1);
    assert_int_equal(report_write_file(path, &b, 0), 0);
    errno = 0;
    assert_int_equal(report_write_file(path, &b, 0), -1);
    assert_int_equal(errno, EEXIST);
    rb_printf(&b, "more\n");
    assert_int_equal(report_write_file(path, &b, 1), 0);
    FILE *f = fopen(path, "rb");
    char got[64] = {0};
    assert_non_null(f);
    assert_int_equal(fread(got, 1, sizeof got - 1, f), b.n);
    fclose(f);
    assert_string_equal(got, "{\"x\": 1}\nmore\n");
    /* Nothing but the output is left in the directory. */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 1", dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/no/such/dir/x", dir);
    assert_int_equal(report_write_file(path, &b, 1), -1);
    snprintf(cmd, sizeof cmd, "rm -r %s", dir);
    assert_int_equal(system(cmd), 0);
    rb_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validator_can_fail),
        cmocka_unit_test(test_config_parse),
        cmocka_unit_test(test_pareto),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_svg),
        cmocka_unit_test(test_markdown),
        cmocka_unit_test(test_write_file),
    };
    return cmocka_run_group_tests(tests, setup_rows, teardown_rows);
}
