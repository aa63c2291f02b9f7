-- gradspec run --html, conventions --html and mutate --html: one
-- self-contained page each, text from specs escaped, and for every failed
-- comparison histograms whose bins hold every compared element and a map
-- that names the pattern of the mismatches. The demo is
-- specs/fixtures/html/demo.lua, whose kernels are broken on purpose.
local process = require("gradspec.process")
local page = require("gradspec.html.page")
local measure = require("gradspec.html.measure")

local F = "specs/fixtures/html/"
local LOAD = "GRADSPEC_LOAD=" .. F .. "broken_backends.lua "

local function has(s, text) return s:find(text, 1, true) ~= nil end

local function read(path)
  local f = assert(io.open(path, "r"))
  local text = f:read("*a")
  f:close()
  return text
end

-- Runs gradspec with args and the demo's backends loaded; returns the page
-- written to a temporary file, the output and the exit status.
local function run_page(args, env)
  local path = os.tmpname()
  local parts = { env or LOAD, process.quote(process.self_exe()) }
  for _, a in ipairs(args) do parts[#parts + 1] = process.quote(a == "PAGE" and path or a) end
  local out, code = process.run(table.concat(parts, " "))
  local f = io.open(path, "r")
  local html = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(path)
  return html, out, code
end

-- Every reference a browser could follow out of the page.
local function external_refs(html)
  local refs = {}
  for attr, v in html:gmatch('%s(%a+)="([^"]*)"') do
    if attr == "src" or attr == "href" or attr == "action" or attr == "data" then refs[#refs + 1] = attr .. "=" .. v end
  end
  for url in html:gmatch("https?://[^\"'%s<>)]+") do
    if url ~= "http://www.w3.org/2000/svg" then refs[#refs + 1] = url end -- SVG's namespace, never fetched
  end
  for _, pat in ipairs({ "<script", "<link", "<iframe", "@import", "url%(" }) do
    if html:find(pat) then refs[#refs + 1] = pat end
  end
  return refs
end

local function self_contained(html)
  assert.equal(html:sub(1, 15), "<!DOCTYPE html>")
  local _, n_html = html:gsub("<html", "")
  assert.equal(n_html, 1, "one document")
  assert.is_true(has(html, "</html>"), "the document is complete")
  assert.equal(table.concat(external_refs(html), " "), "", "external references")
end

-- The comparison blocks of a page: {elements, mismatches, histograms = {{counts}}}.
local function comparisons(html)
  local out = {}
  for attrs, body in html:gmatch('<div class="compare" (data%-[^>]*)>(.-)<table class="grid">') do
    local c = { elements = tonumber(attrs:match('data%-elements="(%d+)"')),
      mismatches = tonumber(attrs:match('data%-mismatches="(%d+)"')), histograms = {} }
    for counts in body:gmatch('class="hist" data%-counts="([%d,]*)"') do
      local list = {}
      for x in counts:gmatch("%d+") do list[#list + 1] = tonumber(x) end
      c.histograms[#c.histograms + 1] = list
    end
    c.body = body
    out[#out + 1] = c
  end
  return out
end

local function sum(list, from)
  local s = 0
  for k = from or 1, #list do s = s + list[k] end
  return s
end

local demo_html, demo_out, demo_code = nil, nil, nil
local function demo()
  if not demo_html then demo_html, demo_out, demo_code = run_page({ "run", F .. "demo.lua", "--html", "PAGE" }) end
  return demo_html
end

describe("gradspec run --html", function()
  it("writes one self-contained page: no script, no link, nothing to fetch", function()
    local html = demo()
    assert.equal(demo_code, 1, demo_out)
    self_contained(html)
    assert.is_true(has(html, "<style>"), "inline CSS")
    assert.is_true(has(html, "<svg"), "inline SVG")
  end)

  it("has the run, the failures first with their rerun commands, and every file and it", function()
    local html = demo()
    for _, text in ipairs({ "<h1>gradspec run</h1>", "6 failed", "2 passed", "1 skipped", "<td>seed</td><td>1234</td>",
      "<td>version</td>", "<td>device</td>", "<td>duration</td>", "<h2>Failures (6)</h2>", "<h2>Spec files</h2>",
      "<h2>Every it</h2>", "a kernel not written yet" }) do
      assert.is_true(has(html, text), "missing: " .. text)
    end
    local failures, files = html:find("<h2>Failures", 1, true), html:find("<h2>Spec files", 1, true)
    assert.is_true(failures < files, "failures come before the list of files")
    -- the rerun command of a failing it: its file, its full name, its seed
    assert.is_true(has(html, "run specs/fixtures/html/demo.lua --filter &#39;a broken kernel against the reference "
      .. "one row of the gradient is off&#39; --seed 1234"), "rerun line")
    -- within a file, failing its are listed before passing and skipped ones
    local list = html:sub((html:find("<h2>Every it", 1, true)))
    local last_fail = 0
    for pos in list:gmatch('()<tr><td><span class="badge fail">') do last_fail = pos end
    local first_pass = list:find('<tr><td><span class="badge pass">', 1, true)
    assert.is_true(last_fail > 0 and first_pass and last_fail < first_pass, "failures first in the list of its")
  end)

  it("fills each failed comparison's histograms with every compared element", function()
    local cs = comparisons(demo())
    assert.equal(#cs, 6, "one failed comparison per failing it")
    for _, c in ipairs(cs) do
      assert.equal(#c.histograms, 2, "tolerance units and ulps")
      assert.equal(sum(c.histograms[1]), c.elements, "tolerance histogram")
      assert.equal(sum(c.histograms[2]), c.elements, "ulp histogram")
      -- the bins beyond the tolerance hold exactly the mismatches
      assert.equal(sum(c.histograms[1], measure.TOL_FIRST_FAIL), c.mismatches)
    end
    -- and the counts are those assert.close reported: 16 x (3 chunks + 1000) gradient elements
    local one_row = cs[1]
    assert.equal(one_row.elements, 16 * (3 * gs.cpu_chunk + 1000))
    local reported = demo():match("assert%.close: (%d+) of " .. one_row.elements .. " elements mismatch")
    assert.equal(tonumber(reported), one_row.mismatches)
  end)

  it("names the pattern of each broken kernel: one row, the last partial vector, the target column, every 4096th column", function()
    local cs = comparisons(demo())
    local wants = {
      { "one_row", "1 of 16 rows: 3" },
      { "tail", "the last 3 columns of 1003 (1000-1002)" },
      { "target", "all 16 mismatches are at their row&#39;s target column" },
      { "chunk_edge", string.format("every %dth column from %d (3 columns)", gs.cpu_chunk, gs.cpu_chunk - 1) },
    }
    for i, w in ipairs(wants) do
      assert.is_true(has(cs[i].body, "cross_entropy: " .. w[1] .. " grad against ref"), "comparison " .. i)
      assert.is_true(has(cs[i].body, "<li>" .. w[2] .. "</li>"), w[1] .. ": " .. w[2])
    end
    -- the map marks the targets and the chunk boundaries where the rows are wider than a chunk
    assert.is_true(has(cs[3].body, "<circle"), "target columns ringed")
    assert.is_true(has(cs[4].body, "chunk " .. gs.cpu_chunk), "chunk boundary marked")
    assert.is_false(has(cs[2].body, "chunk " .. gs.cpu_chunk), "no chunk boundary in a 1003-wide row")
  end)

  it("escapes names and messages from specs", function()
    local html = demo()
    assert.is_true(has(html, "&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot; &#39;names&#39; "
      .. "&lt;script&gt;alert(1)&lt;/script&gt;"), "the it's name, escaped")
    assert.is_true(has(html, "a &lt;NaN&gt; &amp; friends"), "the assertion's message, escaped")
    assert.is_false(has(html, "<b>bold"), "raw markup from a name")
    assert.equal(page.esc([[<a href="x">&'</a>]]), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;")
    assert.equal(page.esc("bell\7 and \255 byte"), "bell\239\191\189 and \239\191\189 byte")
  end)

  it("brings the comparisons back from child processes under -j as a serial run has them", function()
    local files = { F .. "demo.lua", F .. "capture_off.lua" }
    local serial = run_page({ "run", "--no-isolate", "--html", "PAGE", unpack(files) })
    local parallel = run_page({ "run", "-j", "2", "--html", "PAGE", unpack(files) })
    local a, b = comparisons(serial), comparisons(parallel)
    assert.equal(#b, #a)
    for i = 1, #a do
      assert.equal(table.concat(b[i].histograms[1], ","), table.concat(a[i].histograms[1], ","))
      assert.equal(b[i].mismatches, a[i].mismatches)
    end
  end)

  it("adds passing comparisons' histograms with --html-all only", function()
    assert.is_false(has(demo(), "Passing comparisons"))
    local html = run_page({ "run", F .. "demo.lua", "--html", "PAGE", "--html-all", "--filter", "few ulps" })
    assert.is_true(has(html, "<h2>Passing comparisons"), "section")
    assert.is_true(has(html, "cross_entropy: noisy grad against ref"), "the passing comparison")
    assert.is_true(has(html, "largest error "), "its margin")
    -- each passing comparison's small histograms hold every compared element too
    local rows = 0
    for n, row in html:gmatch('<tr data%-elements="(%d+)" data%-mismatches="0">(.-)</tr>') do
      rows = rows + 1
      for counts in row:gmatch('data%-counts="([%d,]*)"') do
        local total = 0
        for x in counts:gmatch("%d+") do total = total + tonumber(x) end
        assert.equal(total, tonumber(n))
      end
    end
    assert.equal(rows, 4, "loss, lse, z_loss and grad")
  end)

  it("gathers no comparison data without --html (a fixture that fails when it does)", function()
    local _, out, code = run_page({ "run", F .. "capture_off.lua" })
    assert.equal(code, 0, out)
    local _, out2, code2 = run_page({ "run", F .. "capture_off.lua", "--html", "PAGE" })
    assert.equal(code2, 1, out2)
    assert.is_true(has(out2, "capture mode"), out2)
  end)

  it("rejects --html-all without --html, and a page it cannot write", function()
    local _, out, code = run_page({ "run", F .. "capture_off.lua", "--html-all" })
    assert.equal(code, 2)
    assert.is_true(has(out, "--html-all needs --html FILE"), out)
    _, out, code = run_page({ "run", F .. "capture_off.lua", "--html", "/nonexistent-dir/r.html" })
    assert.equal(code, 2)
    assert.is_true(has(out, "--html: cannot write /nonexistent-dir/r.html"), out)
  end)
end)

describe("what one comparison keeps", function()
  local function measured(actual, expected, rtol, atol, target)
    local a, e = actual:to("f64"):contiguous(), expected:to("f64"):contiguous()
    return measure.measure({ kind = "assert.close", label = "t", failed = true, actual = a:ptr(), expected = e:ptr(),
      n = a:numel(), rows = a.rows, cols = a.cols, dim = a:dim(), rtol = rtol, atol = atol, tiny = 0,
      adtype = actual.dtype, edtype = expected.dtype, target = target })
  end

  it("counts ulps of the coarser dtype", function()
    local one = 1 + 2 ^ -23 -- one ulp of f32 above 1
    local rec = measured(gs.tensor({ one, 1, 1 + 2 ^ -7 }), gs.tensor({ 1, 1, 1 }, { dtype = "f64" }), 0, 0)
    assert.equal(rec.ulp_dtype, "f32")
    assert.equal(rec.ulp_fail[3], 1, "one ulp: bin [1, 2)") -- 1 + 2^-23
    assert.equal(rec.ulp_fail[3 + 16], 1, "2^16 ulps") -- 2^-7 = 2^16 ulps of f32 at 1
    local b = measured(gs.tensor({ 1 + 2 ^ -7 }, { dtype = "bf16" }), gs.tensor({ 1 }, { dtype = "bf16" }), 0, 0)
    assert.equal(b.ulp_fail[3], 1, "one ulp of bf16")
  end)

  it("keeps at most MAX_PER_IT comparisons per it, the last failure always", function()
    local capture = require("gradspec.html.capture")
    local saved = capture.mode
    capture.set_mode("failed")
    finally(function() capture.set_mode(saved) end)
    for i = 1, capture.MAX_PER_IT + 8 do pcall(assert.close, gs.tensor({ 1, 2 }), gs.tensor({ 1, 2 + i })) end
    assert.close(gs.tensor({ 5 }), gs.tensor({ 5 })) -- passing: not kept without --html-all
    pcall(assert.close, gs.tensor({ 1 }), gs.tensor({ 3 }), { msg = "the last one" })
    local kept, left_out = capture.take()
    assert.equal(#kept, capture.MAX_PER_IT)
    assert.equal(left_out, 9)
    assert.equal(require("gradspec.serial").decode(kept[#kept]).label, "the last one")
  end)

  it("keeps a comparison it could not measure as a note, never as an error of the assertion", function()
    local capture = require("gradspec.html.capture")
    local saved = capture.mode
    capture.set_mode("failed")
    finally(function() capture.set_mode(saved) end)
    capture.comparison({ kind = "assert.close", label = "no data", failed = true, n = 4 }) -- no pointers to read
    local kept = capture.take()
    local rec = require("gradspec.serial").decode(kept[1])
    assert.is_true(rec.measure_error ~= nil, "the reason is kept")
    assert.is_true(has(require("gradspec.html.comparison").html(rec), "could not be measured"))
  end)

  it("keeps a fixed amount whatever the tensor's size", function()
    local x = gs.randn({ 300, 5000 })
    local y = x:clone()
    for i = 0, 299 do y:set(i, 4999, y:get(i, 4999) + 1) end
    local rec = measured(x, y, 1e-5, 1e-5)
    assert.equal(#rec.map, 2 * measure.MAP_ROWS, "one map cell per row bin, as (cell, count) pairs")
    assert.equal(rec.map_rows .. "x" .. rec.map_cols, measure.MAP_ROWS .. "x" .. measure.MAP_COLS)
    assert.equal(#rec.worst, 3 * measure.WORST)
    assert.equal(rec.pattern[1], "every row (300)")
    assert.equal(rec.pattern[2], "the last 1 column of 5000 (4999)")
    local text = require("gradspec.serial").encode(rec)
    assert.is_true(#text < 8000, "kept as " .. #text .. " bytes")
  end)
end)

describe("gradspec conventions --html and gradspec mutate --html", function()
  it("conventions: the table with every violation and the input it failed on", function()
    local html, out, code = run_page({ "conventions", "--load", "specs/fixtures/backends/lua_backends.lua", "--html",
      "PAGE" }, "")
    assert.equal(code, 1, out)
    self_contained(html)
    assert.is_true(has(html, "<h2>Conventions x backends</h2>"))
    assert.is_true(has(html, '<td class="fail">FAIL</td>'), "a failing cell")
    assert.is_true(has(html, "backend <b>plus</b>, input <b>logits of +-1e4</b>"), "a violation with its input")
    assert.is_true(has(html, "logits 2 x 4, f32"), "the input's shape")
  end)

  it("mutate: the kill matrix of perturbations x spec files", function()
    local html, out, code = run_page({ "mutate", "--backend", "good", "--load", "specs/fixtures/backends/lua_backends.lua",
      "--html", "PAGE", "specs/fixtures/backends/suite.lua" }, "")
    assert.is_true(code == 0 or code == 1, out)
    self_contained(html)
    assert.is_true(has(html, "<h2>Kill matrix: mutants x spec files</h2>"))
    assert.is_true(has(html, '<th title="specs/fixtures/backends/suite.lua">suite</th>'), "a column per spec file")
    local rows = 0
    for _ in html:gmatch('<tr><td><span class="badge') do rows = rows + 1 end
    assert.equal(rows, #require("gradspec.perturb").list, "a row per perturbation")
    assert.is_true(has(html, '<td class="pass n" title="'), "a killing cell names its its")
  end)
end)
