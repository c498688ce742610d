// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title RoyaltyToken
/// @notice A 6-decimals ERC20 stablecoin stand-in for the local chain only.
/// Production deployments point usefirst at a real token address instead.
contract RoyaltyToken is ERC20, Ownable {
    constructor(address initialOwner) ERC20("usefirst Royalty Dollar", "rUSD") Ownable(initialOwner) {}

    /// @notice 6 decimals, like the common USD stablecoins.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mint test funds; only the owner (the local deployer) may.
    /// @param to Recipient of the new tokens.
    /// @param amount Amount in token base units (10^-6).
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
