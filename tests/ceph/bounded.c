/* bounded.c: do rados_connect / rbd_open / rbd_read give up after N s when the cluster is gone?
 * usage: bounded CONF KEYRING ID POOL IMAGE TIMEOUT_S [hold|hold-open]
*  hold: connect first; hold-open: connect and open the image first, then wait for Enter (stop the cluster meanwhile), then read. */
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv) {
  if (argc < 7) { fprintf(stderr, "usage: %s CONF KEYRING ID POOL IMAGE TIMEOUT_S [hold|hold-open]\n", argv[0]); return 2; }
  const char *to = argv[6];
  int hold = argc > 7 && strcmp(argv[7], "hold") == 0, hold_open = argc > 7 && strcmp(argv[7], "hold-open") == 0;
  rados_t c; rados_ioctx_t io; rbd_image_t img;
  double t0 = now();
  int r = rados_create(&c, argv[3]);
  if (r < 0) { printf("rados_create: %s\n", strerror(-r)); return 1; }
  rados_conf_read_file(c, argv[1]);
  rados_conf_set(c, "keyring", argv[2]);
  /* the three time limits under test */
  rados_conf_set(c, "client_mount_timeout", to);   /* rados_connect: monmap + auth */
  rados_conf_set(c, "rados_mon_op_timeout", to);   /* every later mon command (pool lookup, ...) */
  rados_conf_set(c, "rados_osd_op_timeout", to);   /* every OSD op (rbd_open reads the header, rbd_read) */
  rados_conf_set(c, "log_to_stderr", "false");
  t0 = now(); r = rados_connect(c);
  printf("rados_connect: %d (%s) after %.1f s\n", r, r < 0 ? strerror(-r) : "ok", now() - t0);
  if (r < 0) return 1;
  t0 = now(); r = rados_ioctx_create(c, argv[4], &io);
  printf("rados_ioctx_create: %d (%s) after %.1f s\n", r, r < 0 ? strerror(-r) : "ok", now() - t0);
  if (r < 0) return 1;
  if (hold) { printf("connected: stop the cluster, then press Enter\n"); fflush(stdout); getchar(); }
  t0 = now(); r = rbd_open(io, argv[5], &img, NULL);
  printf("rbd_open: %d (%s) after %.1f s\n", r, r < 0 ? strerror(-r) : "ok", now() - t0);
  if (r < 0) return 1;
  if (hold_open) { printf("image open: stop the cluster, then press Enter\n"); fflush(stdout); getchar(); }
  char buf[4096];
  t0 = now(); ssize_t n = rbd_read(img, 0, sizeof buf, buf);
  printf("rbd_read: %zd (%s) after %.1f s\n", n, n < 0 ? strerror(-n) : "ok", now() - t0);
  t0 = now(); r = rbd_close(img);
  printf("rbd_close: %d after %.1f s\n", r, now() - t0);
  rados_ioctx_destroy(io);
  t0 = now(); rados_shutdown(c);
  printf("rados_shutdown after %.1f s\n", now() - t0);
  return 0;
}
