/* test_band: drives the band detector through the SDK harness, without the host. */
#include <check.h>
#include <edgewatch/testing.h>
#include <math.h>
#include <stdlib.h>

START_TEST(test_scores_and_flags)
{
    ew_harness *h = ew_harness_new(ew_plugin_entry(), NULL);
    ew_harness_option(h, "low", "10");
    ew_harness_option(h, "high", "20");
    ew_harness_input(h, 2, (const char *[]){"a", "b"});
    ck_assert_int_eq(ew_harness_init(h), EW_OK);
    const ew_schema *out = ew_harness_output(h);
    ck_assert_uint_eq(out->channels, 5); /* a, b, band_distance, score, anomaly */

    int64_t ts[3] = {1, 2, 3};
    double values[6] = {15, 12, 30, 15, 15, NAN};
    ck_assert_int_eq(ew_harness_process(h, 3, ts, values), EW_OK);
    ck_assert_double_eq(ew_harness_scores(h)[0], 0.0);
    ck_assert_int_eq(ew_harness_flags(h)[0], 0);
    ck_assert_double_eq_tol(ew_harness_scores(h)[1], 0.5, 1e-12); /* 10 out, width 10 */
    ck_assert_int_eq(ew_harness_flags(h)[1], 1);
    ck_assert_double_eq(ew_harness_extra(h)[1], 10.0);
    ck_assert_int_eq(ew_harness_flags(h)[2], 0); /* NaN is no evidence */
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(test_rejects_empty_band)
{
    ew_harness *h = ew_harness_new(ew_plugin_entry(), NULL);
    ew_harness_option(h, "low", "5");
    ew_harness_option(h, "high", "5");
    ew_harness_input(h, 1, (const char *[]){"a"});
    ck_assert_int_eq(ew_harness_init(h), EW_ERR);
    ew_harness_destroy(&h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("band");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_scores_and_flags);
    tcase_add_test(tc, test_rejects_empty_band);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
