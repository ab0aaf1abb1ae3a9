/* fuzz_autoencoder_model: a model payload of arbitrary content saved as the
 * autoencoder's model.bin through the host's state files (so the header checks
 * pass and the plugin's own parser sees the bytes); init must load it or refuse
 * it cleanly, and a loaded model must score samples. */
#include "state.h"

#include <edgewatch/testing.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tempfiles.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[] = "/tmp/ew-fuzz-ae-XXXXXX";
    if (!mkdtemp(dir))
        return 0;
    char node[sizeof dir + 8];
    snprintf(node, sizeof node, "%s/test", dir);
    char err[400];
    ew_harness *h = ew_harness_new(ew_plugin_entry(), dir);
    /* The harness names its node "test": its state folder is dir/test. */
    char made[512];
    if (h && state_prepare_dir(dir, "test", made, sizeof made, err, sizeof err) == 0 &&
        state_save(node, "model.bin", ew_plugin_entry()->name, data, size, err, sizeof err) == 0) {
        /* Small settings, those of the seed models in corpus/autoencoder_model. */
        ew_harness_input(h, 2, (const char *[]){"a", "b"});
        ew_harness_option(h, "window", "2");
        ew_harness_option(h, "layers", "3");
        ew_harness_option(h, "train_samples", "64");
        ew_harness_option(h, "epochs", "5");
        ew_harness_option(h, "background", "false");
        if (ew_harness_init(h) == EW_OK) {
            const int64_t ts[4] = {1, 2, 3, 4};
            const double v[8] = {0.5, -1.0, 1e300, -1e300, 0.0 / 0.0, 3.0, 1.0 / 0.0, 0.0};
            ew_harness_process(h, 4, ts, v);
        }
    }
    ew_harness_destroy(&h);
    fuzz_rmdir(node);
    fuzz_rmdir(dir);
    return 0;
}
