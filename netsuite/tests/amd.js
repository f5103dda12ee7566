'use strict';
// A tiny AMD loader for the SuiteScript files: `define(deps, factory)` with `N/...` modules taken from
// the stubs given and relative modules (`./concord_lib`) loaded from the script's own folder. Runs the
// file in this realm, so the objects it builds compare with assert.deepStrictEqual.
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

const SCRIPTS = path.join(__dirname, '..', 'src', 'FileCabinet', 'SuiteScripts', 'Concord');

function load(file, modules = {}) {
  const filename = path.isAbsolute(file) ? file : path.join(SCRIPTS, file);
  const resolve = (name) => {
    if (name.startsWith('./') || name.startsWith('../')) {
      return load(path.join(path.dirname(filename), `${name}.js`), modules);
    }
    if (!(name in modules)) throw new Error(`${path.basename(filename)} needs ${name}: no stub given`);
    return modules[name];
  };
  let exported;
  let defined = 0;
  const define = (deps, factory) => {
    defined += 1;
    exported = factory(...deps.map(resolve));
  };
  const source = fs.readFileSync(filename, 'utf8');
  vm.runInThisContext(`(function (define) {${source}\n})`, { filename })(define);
  if (defined !== 1) throw new Error(`${path.basename(filename)} called define ${defined} times, not once`);
  return exported;
}

module.exports = { load, SCRIPTS };
