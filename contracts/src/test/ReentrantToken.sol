// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title ReentrantToken (test only)
/// @notice A malicious ERC20 that, when `target` sends tokens, calls back into `target` with
/// pre-set calldata and records whether the re-entry succeeded. Never deploy outside tests.
contract ReentrantToken is ERC20 {
    address public target;
    bytes public attackCalldata;
    bool public attackAttempted;
    bool public attackSucceeded;
    bytes public attackReturnData;

    constructor() ERC20("Reentrant", "REENT") {}

    /// @notice Mint freely (test token).
    /// @param to Recipient.
    /// @param amount Base units.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Re-enter `target_` with `data` on its next outgoing transfer.
    /// @param target_ The contract to attack.
    /// @param data The calldata of the re-entrant call.
    function arm(address target_, bytes calldata data) external {
        target = target_;
        attackCalldata = data;
        attackAttempted = false;
        attackSucceeded = false;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (from == target && target != address(0) && !attackAttempted) {
            attackAttempted = true;
            (bool ok, bytes memory ret) = target.call(attackCalldata);
            attackSucceeded = ok;
            attackReturnData = ret;
        }
    }
}
