/* band: a detector that flags values outside a fixed band [low, high] on any channel.
 *
 *     [detector.limits]
 *     plugin = band
 *     input = pump
 *     low = 10
 *     high = 80
 *
 * The score is the distance outside the band relative to its width, mapped
 * into [0, 1) with d / (d + width): 0 inside the band, 0.5 one band-width out.
 * The raw distance is an extra output channel, `band_distance`.
 */
#include <edgewatch/plugin.h>

#include <math.h>
#include <stdlib.h>

typedef struct band_config {
    double low;
    double high;
} band_config;

typedef struct band {
    const ew_host *host;
    ew_node *node;
    const band_config *cfg;
    size_t channels;
} band;

static const ew_option s_options[] = {
    EW_OPTION_REQUIRED("low", EW_OPT_DOUBLE, band_config, low, "Lowest normal value."),
    EW_OPTION_REQUIRED("high", EW_OPT_DOUBLE, band_config, high, "Highest normal value."),
    EW_OPTION_END,
};

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    const band_config *cfg = config;
    if (!(cfg->high > cfg->low)) {
        host->set_error(node, "high (%g) must be greater than low (%g)", cfg->high, cfg->low);
        return EW_ERR;
    }
    band *b = calloc(1, sizeof *b);
    if (!b)
        return EW_ERR;
    b->host = host;
    b->node = node;
    b->cfg = cfg;
    b->channels = host->input_schema(node)->channels;
    const char *extra[] = {"band_distance"};
    if (host->add_channels(node, 1, extra) != EW_OK) {
        free(b);
        return EW_ERR;
    }
    *self = b;
    return EW_OK;
}

static int s_process(void *self, const ew_batch *in, ew_scores *out)
{
    band *b = self;
    double width = b->cfg->high - b->cfg->low;
    for (size_t i = 0; i < in->count; i++) {
        double worst = 0;
        for (size_t c = 0; c < b->channels; c++) {
            double v = in->values[i * in->schema->channels + c];
            if (isnan(v))
                continue; /* a missing value is no evidence either way */
            double d = v < b->cfg->low ? b->cfg->low - v : v > b->cfg->high ? v - b->cfg->high : 0;
            if (d > worst)
                worst = d;
        }
        out->score[i] = isinf(worst) ? 1.0 : worst / (worst + width);
        out->anomaly[i] = worst > 0;
        out->extra[i] = worst;
    }
    return EW_OK;
}

static void s_destroy(void *self)
{
    free(self);
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_DETECTOR,
    .name = "band",
    .version = "1.0.0",
    .description = "Flags values outside a fixed band [low, high]",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(band_config),
    .init = s_init,
    .process = s_process,
    .destroy = s_destroy,
};

EW_PLUGIN_EXPORT(s_plugin)
