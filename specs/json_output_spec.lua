-- gradspec run --output json: one document on stdout that validates
-- against specs/fixtures/json/run.schema.json (checked here by a validator
-- written in Lua, specs/support/json_schema.lua, and by python3's
-- jsonschema too where it is installed), with the specs' own output and the
-- summary line on stderr.
local process = require("gradspec.process")
local J = require("specs.support.json_schema")

local R, P, O = "specs/fixtures/runner/", "specs/fixtures/parallel/", "specs/fixtures/run_order/"
local SCHEMA_PATH = "specs/fixtures/json/run.schema.json"
local ODD = "specs/fixtures/json/odd_text.lua"

local function has(out, text) return out:find(text, 1, true) ~= nil end

-- Runs gradspec with stdout and stderr apart: returns both and the status.
local function run_split(args, env)
  local err_path = os.tmpname()
  local parts = { env or "", process.quote(process.self_exe()), "run" }
  for _, a in ipairs(args) do parts[#parts + 1] = process.quote(a) end
  local out, code = process.run(table.concat(parts, " ") .. " 2>" .. process.quote(err_path))
  local f = io.open(err_path, "r")
  local err = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(err_path)
  return out, err, code
end

local schema = nil
local function valid(doc_text)
  schema = schema or J.read(SCHEMA_PATH)
  local doc, derr = J.decode(doc_text)
  assert.is_true(doc ~= nil, "not one JSON document: " .. tostring(derr) .. "\n" .. doc_text:sub(1, 2000))
  local errors = J.validate(doc, schema)
  assert.equal(table.concat(errors, "\n"), "", "the document does not match the schema")
  return doc
end

local function file_named(doc, name)
  for _, f in ipairs(doc.files) do
    if f.file == name then return f end
  end
  return nil
end

local MIX = { R .. "passing.lua", R .. "mixed.lua", R .. "crash.lua", R .. "load_error.lua", P .. "fast_second.lua", ODD }

describe("--output json", function()
  it("writes one document that validates against the schema, and nothing else on stdout", function()
    -- the text run, for the counts to compare with
    local text_out, text_code = process.gradspec({ "run", unpack(MIX) })
    local json_out, json_err, json_code = run_split({ "--output", "json", unpack(MIX) })
    assert.equal(json_code, text_code, json_err)
    local doc = valid(json_out)
    local summary = text_out:match("(%d+ passed, %d+ failed, %d+ skipped)\n*$")
    assert.equal(json_err:match("(%d+ passed, %d+ failed, %d+ skipped)\n*$"), summary, json_err)
    assert.equal(string.format("%d passed, %d failed, %d skipped", doc.summary.passed, doc.summary.failed,
      doc.summary.skipped), summary)
    -- files in the order they ran, its counted per file
    local order = {}
    for i, f in ipairs(doc.files) do order[i] = f.file end
    assert.equal(table.concat(order, ","), table.concat(MIX, ","))
    local passing = file_named(doc, R .. "passing.lua")
    assert.equal(passing.status, "pass")
    assert.equal(#passing.its, 2)
    assert.equal(passing.its[1].name, "passing runs hooks around each it")
    assert.equal(passing.its[1].assertions, 1)
    assert.equal(passing.its[1].seed, 1234)
    assert.is_true(passing.its[1].duration >= 0)
    assert.is_true(passing.its[1].message == J.null and passing.its[1].reason == J.null)
    local mixed = file_named(doc, R .. "mixed.lua")
    assert.equal(mixed.status, "fail")
    assert.equal(mixed.passed .. "/" .. mixed.failed .. "/" .. mixed.skipped, "4/3/2")
    local by_name = {}
    for _, it in ipairs(mixed.its) do by_name[it.name] = it end
    assert.equal(by_name["mixed asserts nothing"].message, "asserted nothing: an it must check something")
    assert.equal(by_name["mixed is pending"].reason, "pending")
    assert.equal(by_name["mixed is pending"].duration, J.null)
    assert.is_true(has(file_named(doc, R .. "crash.lua").its[2].message, "crashed with SIGSEGV inside this it"))
    assert.equal(file_named(doc, R .. "load_error.lua").its[1].name, R .. "load_error.lua (loading the file)")
    -- text that JSON must escape comes through, bytes that are not UTF-8 as U+FFFD
    local odd = file_named(doc, ODD)
    assert.equal(odd.its[1].name, "odd text fails with \"quotes\", a tab\tand bytes \1\239\191\189")
    assert.is_true(has(odd.its[1].message, "message with \"quotes\", a newline\nand a control byte \1 and \239\191\189 not UTF-8, and ünïcödé"), odd.its[1].message)
    assert.is_true(has(odd.its[2].warnings[1], "was never asserted"), json_out)
    -- what the specs printed went to stderr
    assert.is_true(has(json_err, "printed by the spec"), json_err)
    assert.is_false(has(json_out, "printed by the spec"), json_out)
  end)

  it("records --repeat runs, the flaky its, the slowest, the shuffle seed, the shard and the jobs", function()
    local out, err, code = run_split({ "--output", "json", "--repeat", "3", "--seed", "1234", "--shuffle-seed", "99",
      "--list-slowest", "2", "-j", "2", "--shard", "1/1", O .. "flaky.lua", O .. "order.lua" })
    assert.equal(code, 1, err)
    local doc = valid(out)
    assert.equal(doc["repeat"], 3)
    assert.equal(doc.shuffle_seed, 99)
    assert.equal(doc.jobs, 2)
    assert.equal(doc.shard, "1/1")
    assert.equal(#doc.flaky, 1)
    assert.equal(doc.flaky[1].name, "flaky fails on odd seeds")
    assert.equal(doc.flaky[1].runs, 3)
    assert.equal(doc.flaky[1].failed, 1)
    assert.equal(doc.flaky[1].failed_seeds[1], 1235)
    assert.equal(#doc.slowest, 2)
    assert.equal(doc.notes[1].kind, "shuffle")
    local flaky = file_named(doc, O .. "flaky.lua")
    local seeds = {}
    for _, it in ipairs(flaky.its) do
      if it.name == "flaky fails on odd seeds" then seeds[#seeds + 1] = it["repeat"] .. ":" .. it.seed .. ":" .. it.status end
    end
    assert.equal(table.concat(seeds, " "), "1:1234:pass 2:1235:fail 3:1236:pass")
    assert.is_true(has(err, "Flaky (passed in some --repeat runs, failed in others):"), err)
  end)

  it("in this process too, what the specs print goes to stderr", function()
    local out, err, code = run_split({ "--output", "json", "--no-isolate", R .. "seed.lua", R .. "passing.lua" })
    assert.equal(code, 0, err)
    local doc = valid(out)
    assert.equal(doc.summary.passed, 3)
    assert.is_true(has(err, "seed in the child: 1234"), err)
    assert.is_true(has(err, "3 passed, 0 failed, 0 skipped"), err)
  end)

  it("--json FILE writes the same document beside the text report", function()
    local path = os.tmpname()
    local out, code = process.gradspec({ "run", "--json", path, R .. "passing.lua", R .. "mixed.lua" })
    assert.equal(code, 1, out)
    assert.is_true(has(out, "\n6 passed, 3 failed, 2 skipped\n"), out)
    local f = assert(io.open(path, "r"))
    local text = f:read("*a")
    f:close()
    os.remove(path)
    local doc = valid(text)
    assert.equal(doc.summary.passed .. "/" .. doc.summary.failed, "6/3")
  end)

  it("a run in which nothing ran says so", function()
    local out, err = run_split({ "--output", "json", R .. "mixed.lua", "--filter", "no such it" })
    local doc = valid(out)
    assert.equal(doc.notes[1].kind, "nothing")
    assert.equal(doc.interrupted, J.null)
    assert.is_true(has(err, "nothing ran"), err)
  end)

  it("the validator rejects documents the schema does not allow", function()
    local out = run_split({ "--output", "json", R .. "passing.lua" })
    local doc = valid(out)
    schema = schema or J.read(SCHEMA_PATH)
    doc.files[1].its[1].status = "passed"
    doc.summary.extra = 1
    doc.files[1].its[1].assertions = 1.5
    local errors = table.concat(J.validate(doc, schema), "\n")
    assert.is_true(has(errors, '$.files[0].its[0].status: "passed" is not one of "pass", "fail", "skip"'), errors)
    assert.is_true(has(errors, "$.summary: property extra is not allowed"), errors)
    assert.is_true(has(errors, "$.files[0].its[0].assertions: 1.5 is not of type integer"), errors)
  end)

  it("python3's jsonschema agrees, where it is installed", function()
    local _, code = process.run("python3 -c 'import jsonschema' 2>/dev/null")
    skip_if(code ~= 0, "python3's jsonschema is not installed (Debian: python3-jsonschema)")
    local doc_path = os.tmpname()
    local out = run_split({ "--output", "json", "--repeat", "2", "--list-slowest", "3", R .. "passing.lua",
      R .. "mixed.lua", ODD, O .. "flaky.lua" })
    local f = assert(io.open(doc_path, "w"))
    f:write(out)
    f:close()
    local check, ccode = process.run("python3 -c " .. process.quote([[
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
jsonschema.validate(json.load(open(sys.argv[2])), schema, cls=jsonschema.Draft202012Validator)
print("valid")
]]) .. " " .. SCHEMA_PATH .. " " .. doc_path)
    os.remove(doc_path)
    assert.equal(ccode, 0, check)
    assert.is_true(has(check, "valid"), check)
  end)
end)
