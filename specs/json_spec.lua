-- gradspec.json: the strict decoder (every value RFC 8259 allows, every
-- kind of bad text refused with what is wrong and its byte), the encoder,
-- the UTF-8 helpers, and the callers that pass its errors on.
local json = require("gradspec.json")

-- Text that decodes, and the value written back compactly (which shows
-- arrays and objects apart and keys in document order).
local GOOD = {
  { "an empty object", "{}", "{}" },
  { "an empty array", "[]", "[]" },
  { "JSON's whitespace around and between tokens", ' \t\r\n[ 1 ,\n\t2 ]\r\n', "[1,2]" },
  { "numbers of every form", "[0, -0, 7, -12, 0.5, -3.25, 1e3, 1E-2, 2.5e+2, 123456789]",
    "[0,0,7,-12,0.5,-3.25,1000,0.01,250,123456789]" },
  { "the three words", "[true, false, null]", "[true,false,null]" },
  { "objects keep their document order", '{"b": 1, "a": [{"c": null}], "0": {}}', '{"b":1,"a":[{"c":null}],"0":{}}' },
  { "every two-character escape", '"\\"\\\\\\/\\b\\f\\n\\r\\t"', '"\\"\\\\/\\b\\f\\n\\r\\t"' },
  { "\\u escapes, a surrogate pair among them", '"\\u0041\\u00e9\\u20AC\\ud83d\\ude00"', '"A\195\169\226\130\172\240\159\152\128"' },
  { "\\u0000 as a zero byte", '"a\\u0000b"', '"a\\u0000b"' },
  { "raw UTF-8 of every length", '"A\195\188\226\130\172\240\159\152\128"', '"A\195\188\226\130\172\240\159\152\128"' },
  { "the largest code point, raw", '"\244\143\191\191"', '"\244\143\191\191"' },
  { "a bare value at the top", ' "text" ', '"text"' },
}

-- Text that does not decode, and the whole message: what is wrong and the
-- 1-based byte where it starts.
local BAD = {
  { "a trailing comma in an array", "[1,]", "trailing comma before ']' at byte 4" },
  { "a trailing comma in an object", '{"a":1,}', "trailing comma before '}' at byte 8" },
  { "a leading zero", "[01]", "number with a leading zero at byte 2" },
  { "a leading zero after a minus", "-012", "number with a leading zero at byte 1" },
  { "a decimal point without digits after it", "[1.]", "expected a digit after the decimal point, got ']' at byte 4" },
  { "a number that starts with '.'", ".5", "expected a value, got '.' at byte 1" },
  { "a number that starts with '+'", "+1", "expected a value, got '+' at byte 1" },
  { "a lone minus", "-", "expected a digit after '-', got the end of the text at byte 2" },
  { "an exponent without digits", "1e+", "expected a digit in the exponent, got the end of the text at byte 4" },
  { "a number beyond a double", "[1e400]", "number 1e400 is out of the range of a double at byte 2" },
  { "NaN", "[NaN]", "unknown word 'NaN' (JSON's words are true, false and null) at byte 2" },
  { "a capitalised word", "True", "unknown word 'True' (JSON's words are true, false and null) at byte 1" },
  { "a word cut short", "[nul]", "unknown word 'nul' (JSON's words are true, false and null) at byte 2" },
  { "a raw tab in a string", '"a\tb"', "unescaped control character 0x09 in a string at byte 3" },
  { "a raw newline in a key", '{"a\nb": 1}', "unescaped control character 0x0A in a string at byte 4" },
  { "an unknown escape", '"\\x41"', "bad escape: a backslash before 'x' at byte 2" },
  { "\\u with three hex digits", '"\\u12"', "\\u needs four hex digits at byte 2" },
  { "a high surrogate alone", '"ab\\ud83d"', "high surrogate \\ud83d without a low surrogate after it at byte 4" },
  { "a high surrogate before a letter's escape", '"\\uD83D\\u0041"',
    "high surrogate \\uD83D without a low surrogate after it at byte 2" },
  { "a low surrogate alone", '"\\ude00"', "low surrogate \\ude00 without a high surrogate before it at byte 2" },
  { "a byte that starts no UTF-8 sequence", '"ok\255"', "invalid UTF-8 (byte 0xFF) in a string at byte 4" },
  { "an overlong UTF-8 form", '"\192\175"', "invalid UTF-8 (byte 0xC0) in a string at byte 2" },
  { "a surrogate encoded in UTF-8", '"\237\160\128"', "invalid UTF-8 (byte 0xED) in a string at byte 2" },
  { "UTF-8 above U+10FFFF", '"\244\144\128\128"', "invalid UTF-8 (byte 0xF4) in a string at byte 2" },
  { "a UTF-8 sequence cut short", '"\226\130"', "invalid UTF-8 (byte 0xE2) in a string at byte 2" },
  { "a duplicate key", '{"a":1, "a":2}', 'duplicate key "a" at byte 9' },
  { "a duplicate key spelt with an escape", '{"a":1,"\\u0061":2}', 'duplicate key "a" at byte 8' },
  { "a key that is not a string", "{a:1}", "expected a string key, got 'a' at byte 2" },
  { "a key without ':'", '{"a" 1}', "expected ':' after the key, got '1' at byte 6" },
  { "array items without a comma", "[1 2]", "expected ',' or ']', got '2' at byte 4" },
  { "members without a comma", '{"a":1 "b":2}', "expected ',' or '}', got '\"' at byte 8" },
  { "an array never closed", "[1, [2]", "expected ',' or ']', got the end of the text at byte 8" },
  { "a string never closed", '["abc', "unterminated string at byte 6" },
  { "a backslash at the end", '"abc\\', "unterminated string at byte 6" },
  { "text after the document", "[1] x", "text after the document: 'x' at byte 5" },
  { "two documents", "{} {}", "text after the document: '{' at byte 4" },
  { "empty text", "", "expected a value, got the end of the text at byte 1" },
  { "only whitespace", " \n ", "expected a value, got the end of the text at byte 4" },
  { "a comment", "// c\n1", "expected a value, got '/' at byte 1" },
  { "a byte order mark", "\239\187\191{}", "expected a value, got byte 0xEF at byte 1" },
  { "a single-quoted string", "['a']", "expected a value, got ''' at byte 2" },
}

local function decode_error(text)
  local v, err = json.decode(text)
  assert.equal(v, nil, "decoded " .. tostring(text))
  return err
end

describe("json.decode", function()
  for _, c in ipairs(GOOD) do
    it("reads " .. c[1], function()
      local v, err = json.decode(c[2])
      assert.equal(err, nil)
      assert.equal(json.encode(v), c[3])
    end)
  end

  for _, c in ipairs(BAD) do
    it("refuses " .. c[1] .. ", naming the byte", function()
      assert.equal(decode_error(c[2]), c[3])
    end)
  end

  it("marks arrays and objects, so that [] and {} stay apart", function()
    local v = json.decode('{"a": [], "o": {}, "n": null}')
    assert.is_true(json.is_object(v))
    assert.is_true(json.is_array(v.a))
    assert.is_false(json.is_object(v.a))
    assert.is_true(json.is_object(v.o))
    assert.is_false(json.is_array(v.o))
    assert.is_true(v.n == json.null)
    assert.equal(tostring(json.null), "null")
  end)

  it("gives values as Lua values and an object's keys in document order", function()
    local v = json.decode('{"z": -1.5e2, "y": "\\u00e9", "x": [true, false, 3]}')
    assert.equal(json.keys(v), { "z", "y", "x" })
    assert.equal(v.z, -150)
    assert.equal(v.y, "\195\169")
    assert.equal(v.x[1], true)
    assert.equal(v.x[2], false)
    assert.equal(v.x[3], 3)
    assert.equal(#v.x, 3)
  end)

  it("nests up to max_depth and refuses one level more", function()
    local deep = string.rep("[", json.max_depth) .. string.rep("]", json.max_depth)
    assert.is_true(json.is_array(json.decode(deep)))
    local deeper = string.rep("[", json.max_depth + 1) .. string.rep("]", json.max_depth + 1)
    assert.equal(decode_error(deeper), string.format("nesting deeper than %d levels at byte %d", json.max_depth,
      json.max_depth + 1))
  end)

  it("refuses what is not text, naming the argument", function()
    assert.error(function() json.decode(nil) end, "json.decode: text must be a string, got nil")
    assert.error(function() json.decode(12) end, "json.decode: text must be a string, got number")
  end)
end)

describe("json.encode", function()
  it("sorts the keys of a plain table and writes marked empty arrays as []", function()
    assert.equal(json.encode({ b = 1, a = json.array(), c = {}, d = "x" }), '{"a":[],"b":1,"c":{},"d":"x"}')
  end)

  it("writes object() keys in their order, a nil field as null", function()
    assert.equal(json.encode(json.object({ "z", "a", "m" }, { a = 1, m = json.null })), '{"z":null,"a":1,"m":null}')
  end)

  it("writes integers as integers, other numbers to 17 digits, NaN and infinities as null", function()
    assert.equal(json.encode({ 3, -0.5, 0.1, 2 ^ 53, 0 / 0, math.huge, -math.huge }),
      "[3,-0.5,0.10000000000000001,9007199254740992,null,null,null]")
  end)

  it("escapes quotes, backslashes and control characters, and cleans bytes that are not UTF-8", function()
    assert.equal(json.encode("a\"b\\c\nd\1\127é\255"), '"a\\"b\\\\c\\nd\\u0001\127é\239\191\189"')
  end)

  it("indents one item a line when given an indent", function()
    assert.equal(json.encode(json.object({ "a", "b" }, { a = { 1, 2 }, b = {} }), "  "),
      '{\n  "a": [\n    1,\n    2\n  ],\n  "b": {}\n}')
  end)

  it("gives back what decode read, keys in their order", function()
    local text = '{"b":[1,2.5,{"c":null,"a":"\195\169"}],"a":{},"e":[],"d":true}'
    assert.equal(json.encode(json.decode(text)), text)
  end)

  it("refuses keys that are not strings and a bad indent", function()
    assert.error(function() json.encode({ [1.5] = 1 }) end, "json.encode: object keys must be strings, got the number key 1.5")
    assert.error(function() json.encode({}, 2) end, "json.encode: indent must be a string, got number")
  end)

  it("refuses a table that holds itself", function()
    local t = {}
    t.self = t
    assert.error(function() json.encode(t) end, "nesting deeper than")
  end)
end)

describe("json UTF-8 helpers", function()
  it("utf8_invalid_at finds the first bad byte, nil for valid text", function()
    assert.equal(json.utf8_invalid_at("plain"), nil)
    assert.equal(json.utf8_invalid_at("\195\188\240\159\152\128"), nil)
    assert.equal(json.utf8_invalid_at("ab\195\188\255"), 5)
    assert.equal(json.utf8_invalid_at("\237\160\128"), 1)
  end)

  it("utf8_clean replaces each bad byte with U+FFFD and keeps the rest", function()
    assert.equal(json.utf8_clean("a\255b\195\188"), "a\239\191\189b\195\188")
    assert.equal(json.utf8_clean("\192\175"), "\239\191\189\239\191\189")
    assert.equal(json.utf8_clean("ascii only"), "ascii only")
  end)
end)

describe("json callers", function()
  local function st_file(header)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    local n = #header
    f:write(string.char(n % 256, math.floor(n / 256) % 256, 0, 0, 0, 0, 0, 0), header)
    f:close()
    return path
  end

  it("load_safetensors names itself, the file, what is wrong and the byte of the header", function()
    local entry = '"x":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}'
    local path = st_file("{" .. entry .. ",}")
    -- the brace after the comma: the entry, the "{" and the "," before it
    assert.error(function() gs.load_safetensors(path) end, string.format(
      "load_safetensors: %s: malformed JSON header: trailing comma before '}' at byte %d", path, #entry + 3))
    os.remove(path)
  end)

  it("load_safetensors refuses a header with a key twice", function()
    local entry = '{"dtype":"F32","shape":[0],"data_offsets":[0,0]}'
    local first = '{"x":' .. entry .. ","
    local path = st_file(first .. '"x":' .. entry .. "}")
    assert.error(function() gs.load_safetensors(path) end,
      string.format('malformed JSON header: duplicate key "x" at byte %d', #first + 1))
    os.remove(path)
  end)

  it("save_safetensors refuses names and metadata that are not UTF-8, since the header is JSON", function()
    local path = os.tmpname()
    assert.error(function() gs.save_safetensors(path, { ["w\255"] = gs.zeros({ 2 }) }) end,
      'save_safetensors: the tensor name "w\\xFF" is not valid UTF-8 (byte 2 is 0xFF)')
    assert.error(function() gs.save_safetensors(path, { w = gs.zeros({ 2 }) }, { note = "caf\233" }) end,
      'save_safetensors: the metadata value "caf\\xE9" is not valid UTF-8 (byte 4 is 0xE9)')
    os.remove(path)
  end)

  it("a name with a quote, a newline and UTF-8 survives save and load", function()
    local path = os.tmpname()
    local name = 'w "\n\195\169'
    gs.save_safetensors(path, { [name] = gs.tensor({ 1, 2 }) }, { ["k\t"] = "v\\" })
    local got, meta = gs.load_safetensors(path)
    os.remove(path)
    assert.equal(got[name]:get(1), 2)
    assert.equal(meta["k\t"], "v\\")
  end)
end)
