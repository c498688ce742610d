// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {TransientSlot} from "@openzeppelin/contracts/utils/TransientSlot.sol";

/// @title RoyaltySettlement
/// @notice Holds the funds of published royalty statements and pays each statement line to its
/// payee against a Merkle proof.
/// @dev Life cycle of a settlement id: a SETTLER_ROLE holder publishes `(merkleRoot, total, token,
/// statementHash)` and the contract pulls exactly `total` tokens in the same transaction, so no
/// root is ever unfunded. During the challenge window a GUARDIAN_ROLE holder may revoke it, which
/// returns the funds to the settler. After the window, anyone may submit claims; the money always
/// goes to the line's account. An id is used at most once, ever: it can never be re-published,
/// replaced or withdrawn once claims are open.
///
/// Leaves are OpenZeppelin StandardMerkleTree leaves of `(address account, uint256 amount)`, one
/// per account per settlement. Claimed lines are one bit per (account, settlement sequence number),
/// so an owner's claims across settlements share storage words and repeat claims are cheaper.
///
/// Claims check a proof against the first 176 bits of the root (see {Settlement}): a claim then
/// reads two settlement slots instead of three. {getSettlement} and {verifyLine} use the full root.
contract RoyaltySettlement is AccessControl, Pausable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using TransientSlot for bytes32;
    using TransientSlot for TransientSlot.Uint256Slot;

    /// @notice Role allowed to publish settlements.
    bytes32 public constant SETTLER_ROLE = keccak256("SETTLER_ROLE");
    /// @notice Role allowed to revoke settlements inside their challenge window and to pause.
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");
    /// @notice Upper bound on the challenge window, so funds can never be held back indefinitely.
    uint64 public constant MAX_CHALLENGE_WINDOW = 30 days;

    /// @dev Namespace of the transient per-(account, token) sums of {claimMany}.
    bytes32 private constant _PENDING_NAMESPACE = keccak256("usefirst.RoyaltySettlement.pending");

    enum Status {
        None,
        Published,
        Revoked
    }

    /// @notice A settlement as returned by {getSettlement}.
    struct SettlementView {
        bytes32 merkleRoot;
        IERC20 token;
        uint256 total;
        uint256 remaining;
        bytes32 statementHash;
        address settler;
        uint64 publishedAt;
        uint64 claimableAt;
        Status status;
        uint48 sequence;
    }

    /// @notice One statement line to claim in {claimMany}.
    struct ClaimLine {
        bytes32 settlementId;
        address account;
        uint256 amount;
        bytes32[] proof;
    }

    /// @dev Packed so that a claim reads two slots of its settlement: slot 0 (the root's bytes 0-19,
    /// remaining) and slot 1 (token, claimableAt, status, sequence, the root's bytes 20-21). The full
    /// root and the other fields follow; only publish, revoke and the views read them.
    ///
    /// Claims compare the first 176 bits (22 bytes) of the root. A claim recomputes the root from
    /// its line and proof and pays if those 176 bits equal the published root's; {verifyLine} and
    /// {getSettlement} use all 256 bits. Why 176 bits are enough:
    /// - Forging a claim against a published root means finding a leaf and proof whose computed
    ///   root starts with 176 given bits. keccak256 behaves as a random function, and controlling
    ///   every input of the last hash does not help: about 2^176 hashes, or 2^144 when aiming at
    ///   any of the at most 2^32 settlements at once.
    /// - A collision-style attack needs the attacker to shape the published root too: a payee who
    ///   knew every other line and amount of a statement before it was built, and could choose
    ///   their payout address among many, would still need about 2^88 hashes per side, more than
    ///   the 2^80 address collision every Ethereum account already relies on.
    /// - A forged claim could only take the `remaining` of the settlement it names, never another
    ///   settlement's funds, and the settler, who computes the root, is trusted for it anyway.
    ///
    /// Bounds: `remaining` (so `total`) fits 96 bits, 79 billion tokens of 18 decimals ({publish}
    /// refuses more with {TotalTooLarge}); `sequence` 32 bits (2^32 - 1 settlements, then
    /// {publish} reverts); `claimableAt` 40 bits (seconds, until the year 36812).
    struct Settlement {
        // Slot 0: read and written by every claim.
        bytes20 rootHigh; // merkleRoot bytes 0-19
        uint96 remaining;
        // Slot 1: read by every claim.
        IERC20 token;
        uint40 claimableAt;
        Status status;
        uint32 sequence;
        bytes2 rootLow; // merkleRoot bytes 20-21
        // Slots 2-5: publish, revoke and the views only.
        bytes32 merkleRoot;
        address settler;
        uint64 publishedAt;
        uint256 total;
        bytes32 statementHash;
    }

    // Packs with Pausable's `_paused` flag: publish reads all three in one slot.
    uint64 private _challengeWindow;
    uint32 private _settlementCount;

    mapping(bytes32 settlementId => Settlement) private _settlements;
    mapping(address account => mapping(uint256 word => uint256 bits)) private _claimedBits;

    /// @notice A statement root was published and funded with `total` tokens.
    event SettlementPublished(
        bytes32 indexed settlementId,
        IERC20 indexed token,
        address indexed settler,
        bytes32 merkleRoot,
        uint256 total,
        bytes32 statementHash,
        uint64 claimableAt
    );

    /// @notice The guardian revoked a settlement inside its challenge window; `refunded` went back
    /// to the settler.
    event SettlementRevoked(
        bytes32 indexed settlementId, IERC20 indexed token, address indexed settler, uint256 refunded
    );

    /// @notice A statement line was paid to `account`.
    event Claimed(bytes32 indexed settlementId, IERC20 indexed token, address indexed account, uint256 amount);

    /// @notice The challenge window for future publications changed.
    event ChallengeWindowChanged(uint64 previousSeconds, uint64 newSeconds);

    error InvalidSettlementId();
    error InvalidMerkleRoot();
    error InvalidToken();
    error ZeroTotal();
    error TotalTooLarge(uint256 total, uint256 max);
    error AlreadyPublished(bytes32 settlementId, Status status);
    error TransferAmountMismatch(IERC20 token, uint256 expected, uint256 received);
    error SettlementNotFound(bytes32 settlementId);
    error SettlementIsRevoked(bytes32 settlementId);
    error ClaimNotOpen(bytes32 settlementId, uint64 claimableAt);
    error ChallengeWindowClosed(bytes32 settlementId, uint64 claimableAt);
    error InvalidProof(bytes32 settlementId, address account, uint256 amount);
    error AlreadyClaimed(bytes32 settlementId, address account);
    error ZeroAmount(bytes32 settlementId, address account);
    error ClaimExceedsRemaining(bytes32 settlementId, uint256 amount, uint256 remaining);
    error ChallengeWindowTooLong(uint64 seconds_, uint64 max);
    error InvalidAdmin();

    /// @param admin Receives DEFAULT_ADMIN_ROLE (manages roles and the challenge window).
    /// @param settler Receives SETTLER_ROLE; address(0) to grant it later.
    /// @param guardian Receives GUARDIAN_ROLE; address(0) to grant it later.
    /// @param challengeWindowSeconds Seconds between publication and the opening of claims.
    constructor(address admin, address settler, address guardian, uint64 challengeWindowSeconds) {
        if (admin == address(0)) revert InvalidAdmin();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        if (settler != address(0)) _grantRole(SETTLER_ROLE, settler);
        if (guardian != address(0)) _grantRole(GUARDIAN_ROLE, guardian);
        _setChallengeWindow(challengeWindowSeconds);
    }

    // --- settler ---------------------------------------------------------------------------

    /// @notice Publish a statement root and fund it with exactly `total` tokens from the caller.
    /// @dev The caller must have approved `total`. The balance of this contract must grow by exactly
    /// `total`, so fee-on-transfer and other non-standard tokens are refused.
    /// @param settlementId Unique id of the statement, e.g. keccak256(model id, period id); never reused.
    /// @param merkleRoot StandardMerkleTree root over `(address account, uint256 amount)` lines.
    /// @param total Sum of the statement lines, in token base units; at most `type(uint96).max`.
    /// @param token The ERC20 the lines are paid in.
    /// @param statementHash Hash of the off-chain statement document, for audit.
    /// @return claimableAt Unix time from which lines can be claimed.
    function publish(bytes32 settlementId, bytes32 merkleRoot, uint256 total, IERC20 token, bytes32 statementHash)
        external
        onlyRole(SETTLER_ROLE)
        whenNotPaused
        nonReentrant
        returns (uint64 claimableAt)
    {
        if (settlementId == bytes32(0)) revert InvalidSettlementId();
        if (merkleRoot == bytes32(0)) revert InvalidMerkleRoot();
        if (address(token) == address(0)) revert InvalidToken();
        if (total == 0) revert ZeroTotal();
        if (total > type(uint96).max) revert TotalTooLarge(total, type(uint96).max);
        Settlement storage s = _settlements[settlementId];
        if (s.status != Status.None) revert AlreadyPublished(settlementId, s.status);

        claimableAt = uint64(block.timestamp) + _challengeWindow;
        // Checked: the 2^32-th publication reverts instead of reusing a claimed-bits position.
        uint32 sequence = _settlementCount;
        _settlementCount = sequence + 1;
        s.rootHigh = bytes20(merkleRoot);
        s.remaining = uint96(total);
        s.token = token;
        s.claimableAt = uint40(claimableAt);
        s.status = Status.Published;
        s.sequence = sequence;
        s.rootLow = bytes2(merkleRoot << 160);
        s.merkleRoot = merkleRoot;
        s.settler = msg.sender;
        s.publishedAt = uint64(block.timestamp);
        s.total = total;
        s.statementHash = statementHash;
        emit SettlementPublished(settlementId, token, msg.sender, merkleRoot, total, statementHash, claimableAt);

        uint256 balanceBefore = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), total);
        uint256 received = token.balanceOf(address(this)) - balanceBefore;
        if (received != total) revert TransferAmountMismatch(token, total, received);
    }

    // --- guardian --------------------------------------------------------------------------

    /// @notice Revoke a settlement during its challenge window and return its funds to the settler.
    /// @dev Works while paused. After the window closes the funds are owed to the payees and this
    /// reverts; the guardian has no other way to move funds.
    /// @param settlementId The settlement to revoke.
    function revoke(bytes32 settlementId) external onlyRole(GUARDIAN_ROLE) nonReentrant {
        Settlement storage s = _settlements[settlementId];
        _requirePublished(s, settlementId);
        if (block.timestamp >= s.claimableAt) revert ChallengeWindowClosed(settlementId, s.claimableAt);
        uint256 refund = s.remaining;
        IERC20 token = s.token;
        address settler = s.settler;
        s.remaining = 0;
        s.status = Status.Revoked;
        emit SettlementRevoked(settlementId, token, settler, refund);
        token.safeTransfer(settler, refund);
    }

    /// @notice Stop publications and claims.
    function pause() external onlyRole(GUARDIAN_ROLE) {
        _pause();
    }

    /// @notice Resume publications and claims.
    function unpause() external onlyRole(GUARDIAN_ROLE) {
        _unpause();
    }

    // --- admin -----------------------------------------------------------------------------

    /// @notice Set the challenge window of settlements published from now on.
    /// @param challengeWindowSeconds Seconds, at most {MAX_CHALLENGE_WINDOW}; 0 opens claims at once.
    function setChallengeWindow(uint64 challengeWindowSeconds) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setChallengeWindow(challengeWindowSeconds);
    }

    // --- claims ----------------------------------------------------------------------------

    /// @notice Pay one statement line to its account. Anyone may submit; the funds go to `account`.
    /// @param settlementId The settlement the line belongs to.
    /// @param account The payee of the line.
    /// @param amount The line amount in token base units.
    /// @param proof StandardMerkleTree proof of `(account, amount)` under the settlement root.
    function claim(bytes32 settlementId, address account, uint256 amount, bytes32[] calldata proof)
        external
        whenNotPaused
        nonReentrant
    {
        IERC20 token = _takeLine(settlementId, account, amount, proof, false);
        token.safeTransfer(account, amount);
    }

    /// @notice Pay many statement lines, possibly of several settlements, with one transfer per
    /// (account, token). Lines already claimed are skipped; any other invalid line reverts the batch.
    /// @param lines The lines to pay.
    /// @return paidLines How many lines were paid (the rest were already claimed).
    function claimMany(ClaimLine[] calldata lines) external whenNotPaused nonReentrant returns (uint256 paidLines) {
        address[] memory accounts = new address[](lines.length);
        IERC20[] memory tokens = new IERC20[](lines.length);
        uint256 pairs;
        for (uint256 i = 0; i < lines.length; ++i) {
            ClaimLine calldata line = lines[i];
            // Skipping keeps a batch useful when one of its lines was claimed in the meantime.
            IERC20 token = _takeLine(line.settlementId, line.account, line.amount, line.proof, true);
            if (address(token) == address(0)) continue;
            TransientSlot.Uint256Slot pending = _pendingSlot(line.account, token).asUint256();
            uint256 sum = pending.tload();
            // Amounts are never zero, so a zero sum means the pair is new.
            if (sum == 0) {
                accounts[pairs] = line.account;
                tokens[pairs] = token;
                ++pairs;
            }
            pending.tstore(sum + line.amount);
            ++paidLines;
        }
        for (uint256 p = 0; p < pairs; ++p) {
            TransientSlot.Uint256Slot pending = _pendingSlot(accounts[p], tokens[p]).asUint256();
            uint256 amount = pending.tload();
            pending.tstore(0);
            tokens[p].safeTransfer(accounts[p], amount);
        }
    }

    // --- views -----------------------------------------------------------------------------

    /// @notice A settlement's state; `status` is None if the id was never published.
    /// @param settlementId The settlement id.
    function getSettlement(bytes32 settlementId) external view returns (SettlementView memory) {
        Settlement storage s = _settlements[settlementId];
        return SettlementView({
            merkleRoot: s.merkleRoot,
            token: s.token,
            total: s.total,
            remaining: s.remaining,
            statementHash: s.statementHash,
            settler: s.settler,
            publishedAt: s.publishedAt,
            claimableAt: s.claimableAt,
            status: s.status,
            sequence: s.sequence
        });
    }

    /// @notice Whether `account`'s line of a published settlement was claimed.
    /// @param settlementId The settlement id.
    /// @param account The payee.
    function isClaimed(bytes32 settlementId, address account) external view returns (bool) {
        Settlement storage s = _settlements[settlementId];
        if (s.status == Status.None) return false;
        (uint256 word, uint256 bit) = _claimedPosition(s.sequence);
        return _claimedBits[account][word] & bit != 0;
    }

    /// @notice Whether `(account, amount)` with `proof` is a line of the settlement's root.
    /// @param settlementId The settlement id.
    /// @param account The payee.
    /// @param amount The line amount in token base units.
    /// @param proof StandardMerkleTree proof.
    function verifyLine(bytes32 settlementId, address account, uint256 amount, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        bytes32 root = _settlements[settlementId].merkleRoot;
        return root != bytes32(0) && _processProof(proof, _leaf(account, amount)) == root;
    }

    /// @notice Seconds between publication and the opening of claims, for new publications.
    function challengeWindow() external view returns (uint64) {
        return _challengeWindow;
    }

    /// @notice How many settlements were ever published.
    function settlementCount() external view returns (uint48) {
        return _settlementCount;
    }

    // --- internals -------------------------------------------------------------------------

    function _setChallengeWindow(uint64 challengeWindowSeconds) private {
        if (challengeWindowSeconds > MAX_CHALLENGE_WINDOW) {
            revert ChallengeWindowTooLong(challengeWindowSeconds, MAX_CHALLENGE_WINDOW);
        }
        emit ChallengeWindowChanged(_challengeWindow, challengeWindowSeconds);
        _challengeWindow = challengeWindowSeconds;
    }

    function _requirePublished(Settlement storage s, bytes32 settlementId) private view {
        Status status = s.status;
        if (status != Status.Published) _revertNotPublished(settlementId, status);
    }

    function _revertNotPublished(bytes32 settlementId, Status status) private pure {
        if (status == Status.Revoked) revert SettlementIsRevoked(settlementId);
        revert SettlementNotFound(settlementId);
    }

    /// @dev Checks that claims are open, marks the line claimed and takes its amount out of the
    /// settlement. Returns the token to pay in, or the zero address when `skipClaimed` is set and
    /// the line was already claimed. Reads settlement slots 0 and 1 only (see {Settlement}).
    function _takeLine(
        bytes32 settlementId,
        address account,
        uint256 amount,
        bytes32[] calldata proof,
        bool skipClaimed
    ) private returns (IERC20 token) {
        Settlement storage s = _settlements[settlementId];
        // Slot 1, read once.
        token = s.token;
        bytes2 rootLow = s.rootLow;
        {
            uint32 sequence = s.sequence;
            Status status = s.status;
            uint40 claimableAt = s.claimableAt;
            if (status != Status.Published) _revertNotPublished(settlementId, status);
            if (block.timestamp < claimableAt) revert ClaimNotOpen(settlementId, claimableAt);
            if (!_markClaimed(account, sequence)) {
                if (skipClaimed) return IERC20(address(0));
                revert AlreadyClaimed(settlementId, account);
            }
        }
        if (amount == 0) revert ZeroAmount(settlementId, account);
        bytes32 root = _processProof(proof, _leaf(account, amount));
        // Slot 0, read once and written once: `rootHigh` in its low 160 bits, `remaining` above.
        uint256 slot0;
        assembly ("memory-safe") {
            slot0 := sload(s.slot)
        }
        if (bytes20(root) != bytes20(uint160(slot0)) || bytes2(root << 160) != rootLow) {
            revert InvalidProof(settlementId, account, amount);
        }
        uint256 remaining = slot0 >> 160;
        // Only a statement whose lines add up to more than its total can hit this: the loss then
        // stays inside that settlement and never reaches another settlement's funds.
        if (amount > remaining) revert ClaimExceedsRemaining(settlementId, amount, remaining);
        // amount <= remaining, so this lowers `remaining` by `amount` and leaves `rootHigh` as is.
        assembly ("memory-safe") {
            sstore(s.slot, sub(slot0, shl(160, amount)))
        }
        emit Claimed(settlementId, token, account, amount);
    }

    /// @dev Sets the (account, sequence) claimed bit; false if it was already set.
    function _markClaimed(address account, uint32 sequence) private returns (bool) {
        (uint256 word, uint256 bit) = _claimedPosition(sequence);
        mapping(uint256 word => uint256 bits) storage words = _claimedBits[account];
        uint256 bits = words[word];
        if (bits & bit != 0) return false;
        words[word] = bits | bit;
        return true;
    }

    function _claimedPosition(uint32 sequence) private pure returns (uint256 word, uint256 bit) {
        word = sequence >> 8;
        bit = 1 << (sequence & 0xff);
    }

    /// @dev keccak256(bytes.concat(keccak256(abi.encode(account, amount)))), the StandardMerkleTree
    /// leaf, hashed in scratch space instead of freshly allocated memory.
    function _leaf(address account, uint256 amount) private pure returns (bytes32 leaf) {
        assembly ("memory-safe") {
            mstore(0x00, and(account, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(0x20, amount)
            mstore(0x00, keccak256(0x00, 0x40))
            leaf := keccak256(0x00, 0x20)
        }
    }

    /// @dev The root reached from `leaf` along `proof`, hashing sorted pairs: what OpenZeppelin's
    /// `MerkleProof.processProofCalldata` returns, in one loop over scratch space (about 75 gas
    /// less per proof level). The proof's calldata bounds were checked by the ABI decoder.
    function _processProof(bytes32[] calldata proof, bytes32 leaf) private pure returns (bytes32 root) {
        assembly ("memory-safe") {
            root := leaf
            let end := add(proof.offset, shl(5, proof.length))
            for { let p := proof.offset } lt(p, end) { p := add(p, 0x20) } {
                let sibling := calldataload(p)
                // Sorted pair: the smaller hash first.
                let swap := gt(root, sibling)
                mstore(shl(5, swap), root)
                mstore(shl(5, iszero(swap)), sibling)
                root := keccak256(0x00, 0x40)
            }
        }
    }

    function _pendingSlot(address account, IERC20 token) private pure returns (bytes32) {
        return keccak256(abi.encode(_PENDING_NAMESPACE, account, token));
    }
}
