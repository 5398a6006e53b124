# transcode/: the libvips variant pipeline
LIB_SRCS   += transcode/snapcache_transcode.c
LIB_HDRS   += transcode/snapcache_transcode.h
