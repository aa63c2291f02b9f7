-- |actual - expected| <= rel * (|expected| + max |expected|): closeness
-- relative to the output's own scale, so that entries of a sum that cancel
-- to near 0 are held to the accuracy of the sum's terms (the linear cross
-- entropy's dh, dW and db are such sums). what names the output.
local assert = require("gradspec").assert

return function(actual, expected, rel, what)
  local scale = expected:numel() > 0 and expected:abs():max():item() or 0
  if scale ~= scale or scale == math.huge then scale = 0 end
  assert.close(actual, expected, { rtol = rel, atol = rel * scale + 1e-30, equal_nan = true, msg = what })
end
