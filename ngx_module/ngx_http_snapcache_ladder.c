
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache: the variant ladder, from configuration.  Each rung is a
 * name, a width, a quality and the formats it may be served in; the
 * ladder is kept smallest first, and each rung is keyed by what it is,
 * so that a changed ladder never reads another rung's records.
 */


#include "ngx_module/ngx_http_snapcache.h"
#include "adapt/snapcache_adapt.h"


static ngx_int_t ngx_http_snapcache_default_ladder(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *conf);
static ngx_int_t ngx_http_snapcache_variant_id(ngx_conf_t *cf,
    ngx_http_snapcache_variant_t *v);
static ngx_int_t ngx_http_snapcache_parse_formats(ngx_str_t *list,
    ngx_uint_t *formats);


#define NGX_HTTP_SNAPCACHE_JPEG_WEBP                                          \
    (SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_JPEG)                              \
     | SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_WEBP))


/* The default ladder: thumb 320/q50, sd 640/q65, hd 1280/q75, full 1920/q85 */
static ngx_http_snapcache_variant_t  ngx_http_snapcache_default_variants[] = {
    { ngx_string("thumb"), 320, 50,
      NGX_HTTP_SNAPCACHE_JPEG_WEBP, 0, 0 },
    { ngx_string("sd"), 640, 65,
      NGX_HTTP_SNAPCACHE_JPEG_WEBP, 0, 0 },
    { ngx_string("hd"), 1280, 75,
      NGX_HTTP_SNAPCACHE_JPEG_WEBP, 0, 0 },
    { ngx_string("full"), 1920, 85,
      NGX_HTTP_SNAPCACHE_JPEG_WEBP, 0, 0 }
};


/*
 * The ladder is kept smallest first, so that "at or below max" is an
 * index comparison; the default variant resolves to an index once here.
 */
char *
ngx_http_snapcache_merge_ladder(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *conf)
{
    ngx_uint_t                     i, j;
    ngx_http_snapcache_variant_t  *v, tmp;

    if (conf->variants == NULL) {
        if (ngx_http_snapcache_default_ladder(cf, conf) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    v = conf->variants->elts;

    for (i = 0; i < conf->variants->nelts; i++) {
        if (ngx_http_snapcache_variant_id(cf, &v[i]) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    for (i = 1; i < conf->variants->nelts; i++) {
        for (j = i; j > 0 && v[j - 1].width > v[j].width; j--) {
            tmp = v[j];
            v[j] = v[j - 1];
            v[j - 1] = tmp;
        }
    }

    if (conf->default_variant.len == 0) {
        /*
         * The second-largest rung: good on most links, never the largest.
         * Only the index is set, so that a nested ladder gets its own.
         */
        conf->default_index = conf->variants->nelts > 1
                              ? conf->variants->nelts - 2 : 0;
        return NGX_CONF_OK;
    }

    for (i = 0; i < conf->variants->nelts; i++) {
        if (v[i].name.len == conf->default_variant.len
            && ngx_strncmp(v[i].name.data, conf->default_variant.data,
                           v[i].name.len) == 0)
        {
            conf->default_index = i;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"snapcache_default_variant\" \"%V\" is not in "
                       "the ladder", &conf->default_variant);

    return NGX_CONF_ERROR;
}


/*
 * A rung's key names it by what it is: width, quality and the version of
 * the transcode pipeline, so that a record made for another rung, by
 * another configuration or an older pipeline, is never read for it.
 */
static ngx_int_t
ngx_http_snapcache_variant_id(ngx_conf_t *cf, ngx_http_snapcache_variant_t *v)
{
    v->id = snapcache_cache_variant(v->width, v->quality,
                                    SNAPCACHE_TRANSCODE_PIPELINE);
    v->weight = snapcache_adapt_weight((uint32_t) v->width,
                                       (uint32_t) v->quality);

    if (v->id == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "variant \"%V\" cannot be keyed", &v->name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_snapcache_default_ladder(ngx_conf_t *cf,
    ngx_http_snapcache_loc_conf_t *conf)
{
    ngx_uint_t                     i, n;
    ngx_http_snapcache_variant_t  *v;

    n = sizeof(ngx_http_snapcache_default_variants)
        / sizeof(ngx_http_snapcache_variant_t);

    conf->variants = ngx_array_create(cf->pool, n,
                                      sizeof(ngx_http_snapcache_variant_t));
    if (conf->variants == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        v = ngx_array_push(conf->variants);
        if (v == NULL) {
            return NGX_ERROR;
        }

        *v = ngx_http_snapcache_default_variants[i];
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_snapcache_parse_formats(ngx_str_t *list, ngx_uint_t *formats)
{
    u_char  *p, *end, *comma;
    size_t   len;

    *formats = 0;
    p = list->data;
    end = p + list->len;

    while (p < end) {
        comma = ngx_strlchr(p, end, ',');
        len = (comma ? comma : end) - p;

        if (len == 4 && ngx_strncmp(p, "jpeg", 4) == 0) {
            *formats |= SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_JPEG);

        } else if (len == 4 && ngx_strncmp(p, "webp", 4) == 0) {
            *formats |= SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_WEBP);

        } else if (len == 4 && ngx_strncmp(p, "avif", 4) == 0) {
            *formats |= SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_AVIF);

        } else {
            return NGX_ERROR;
        }

        p += len + 1;
    }

    /* JPEG is what every client decodes: it is always available */
    *formats |= SNAPCACHE_FORMAT_BIT(SNAPCACHE_FORMAT_JPEG);

    return NGX_OK;
}


/* snapcache_variant <name> width=<px> quality=<1-100> [formats=jpeg,webp] */
char *
ngx_http_snapcache_variant(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_snapcache_loc_conf_t *slcf = conf;

    ngx_str_t                     *value, s;
    ngx_int_t                      n;
    ngx_uint_t                     i;
    ngx_http_snapcache_variant_t  *v, *vs;

    value = cf->args->elts;

    if (!snapcache_id_valid((const char *) value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid variant name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (slcf->variants == NGX_CONF_UNSET_PTR) {
        slcf->variants = ngx_array_create(cf->pool, 4,
                                          sizeof(ngx_http_snapcache_variant_t));
        if (slcf->variants == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    vs = slcf->variants->elts;

    for (i = 0; i < slcf->variants->nelts; i++) {
        if (vs[i].name.len == value[1].len
            && ngx_strncmp(vs[i].name.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate variant \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (slcf->variants->nelts >= NGX_HTTP_SNAPCACHE_MAX_RUNGS) {
        return "is repeated too often: a ladder has at most 16 variants";
    }

    v = ngx_array_push(slcf->variants);
    if (v == NULL) {
        return NGX_CONF_ERROR;
    }

    v->name = value[1];
    v->width = 0;
    v->quality = 0;
    v->formats = NGX_HTTP_SNAPCACHE_JPEG_WEBP;
    v->id = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "width=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);
            if (n == NGX_ERROR || n < 16 || n > 8192) {
                goto invalid;
            }

            v->width = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "quality=", 8) == 0) {
            n = ngx_atoi(value[i].data + 8, value[i].len - 8);
            if (n == NGX_ERROR || n < 1 || n > 100) {
                goto invalid;
            }

            v->quality = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "formats=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            if (ngx_http_snapcache_parse_formats(&s, &v->formats) != NGX_OK) {
                goto invalid;
            }

            continue;
        }

        goto invalid;
    }

    if (v->width == 0 || v->quality == 0) {
        return "needs width= and quality=";
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}
