// SuiteCloud CLI configuration of Concord's account customization project (src/): deploy with
// `suitecloud project:deploy` from this folder (docs/netsuite-suitescript.md).
module.exports = {
  defaultProjectFolder: 'src',
  commands: {},
};
