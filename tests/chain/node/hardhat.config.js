// Hardhat network for the on-chain tests: started by tests/chain/node.py as `hardhat node`.
// Contracts are compiled by tests/chain/compile.py with the npm solc package, never by Hardhat
// (Hardhat would download a compiler, and CI has no internet).

// Interval mining is off unless HARDHAT_INTERVAL_MS is set: tests decide when blocks appear.
const intervalMs = Number(process.env.HARDHAT_INTERVAL_MS || 0);

/** @type import('hardhat/config').HardhatUserConfig */
module.exports = {
  defaultNetwork: "hardhat",
  networks: {
    hardhat: {
      chainId: 31337,
      // automine: every transaction gets its own block at once; LocalNode.set_automine(False) turns it off
      mining: { auto: true, interval: intervalMs },
      loggingEnabled: false,
    },
  },
  paths: {
    // keep Hardhat's own cache/artifacts out of the way (nothing is compiled by Hardhat)
    cache: "./.hardhat-cache",
    artifacts: "./.hardhat-artifacts",
  },
};
