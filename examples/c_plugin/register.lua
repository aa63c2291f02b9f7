-- Registers libmy_ce.so as the backend "my_ce". Load it with
--   gradspec run --load register.lua my_ce_spec.lua
-- (or GRADSPEC_LOAD=register.lua). MY_CE_LIB names another build of the
-- library; the default path is relative to the current directory.
gs.backend.load{ name = "my_ce", library = os.getenv("MY_CE_LIB") or "build/libmy_ce.so", device = "cpu",
  dtypes = { "f32" }, options = { "reduction", "ignore_index", "logit_scale", "softcap" },
  ops = { cross_entropy = "my_ce_forward", cross_entropy_backward = "my_ce_backward", log_probs = "my_log_probs_forward" } }
