// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/// @title DatasetRegistry
/// @notice Anchors what a dataset is (content root), under which terms it may be used (terms
/// hash, allowed uses, validity) and who owns it (co-owners with shares in basis points), each
/// anchored record carrying every co-owner's EIP-712 RightsConfirmation signature, verified here.
/// @dev The typed data is defined once in `ledger/rights/eip712.py`; the type strings below must
/// stay byte-identical to it. Signatures are checked with SignatureChecker, so ERC-1271 contract
/// wallets can confirm and revoke. Each accepted signature consumes its signer's nonce (OZ Nonces),
/// so no signature is ever accepted twice.
///
/// Registration is submitted by a REGISTRAR_ROLE holder (the usefirst ledger) so nobody can squat a
/// dataset id with their own signatures; the co-owners' signatures remain the authority over the
/// content of the record. Revocation needs only a co-owner's signature and anyone may submit it, so
/// an owner can always withdraw consent without us.
contract DatasetRegistry is AccessControl, EIP712, Nonces {
    /// @notice Role allowed to submit registrations (signatures are still required).
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");

    /// @notice EIP-712 type hash of a rights confirmation; equals `CONFIRMATION_TYPE` in eip712.py.
    bytes32 public constant CONFIRMATION_TYPEHASH = keccak256(
        "RightsConfirmation(bytes32 datasetId,bytes32 contentRoot,bytes32 termsHash,uint8 allowedUses,"
        "address[] coOwners,uint16[] sharesBps,uint64 validFrom,uint64 validUntil,uint256 nonce)"
    );

    /// @notice EIP-712 type hash of a rights revocation; equals `REVOCATION_TYPE` in eip712.py.
    bytes32 public constant REVOCATION_TYPEHASH = keccak256("RightsRevocation(bytes32 datasetId,uint256 nonce)");

    /// @notice Shares of all co-owners add up to exactly this many basis points.
    uint16 public constant TOTAL_SHARES_BPS = 10_000;

    /// @notice Bits of `allowedUses`: 1 = train, 2 = rag.
    uint8 public constant ALLOWED_USES_MASK = 3;

    /// @notice Upper bound on co-owners per dataset, so registration gas stays bounded.
    uint256 public constant MAX_CO_OWNERS = 32;

    /// @notice What the co-owners sign and what is anchored.
    struct Registration {
        bytes32 datasetId;
        bytes32 contentRoot;
        bytes32 termsHash;
        uint8 allowedUses;
        address[] coOwners; // strictly ascending
        uint16[] sharesBps; // aligned with coOwners, each > 0, summing to 10,000
        uint64 validFrom; // unix seconds
        uint64 validUntil; // unix seconds, 0 = no end
    }

    /// @notice One signer's RightsConfirmation over a Registration.
    struct CoOwnerSignature {
        address signer;
        uint256 nonce;
        bytes signature;
    }

    /// @notice A dataset's anchored record as returned by {getDataset}.
    struct DatasetRecord {
        bytes32 contentRoot;
        bytes32 termsHash;
        uint8 allowedUses;
        uint64 validFrom;
        uint64 validUntil;
        uint32 version; // 0 = never registered; +1 on every (re-)registration
        uint64 registeredAt;
        uint64 revokedAt; // 0 = not revoked
        address revokedBy;
        address[] coOwners;
        uint16[] sharesBps;
    }

    mapping(bytes32 datasetId => DatasetRecord) private _datasets;

    /// @notice A dataset was registered (version 1) or re-registered with new terms (version > 1).
    event DatasetRegistered(bytes32 indexed datasetId, uint32 indexed version, Registration registration);

    /// @notice A co-owner revoked the current registration of a dataset.
    event DatasetRevoked(bytes32 indexed datasetId, address indexed coOwner, uint32 version);

    /// @notice An owner burnt a nonce, invalidating any signature made with it that was not yet used.
    event NonceCancelled(address indexed owner, uint256 nonce);

    error InvalidDatasetId();
    error InvalidCoOwnerCount(uint256 count, uint256 max);
    error LengthMismatch(uint256 coOwners, uint256 sharesBps);
    error CoOwnersNotSorted(uint256 index);
    error ZeroShare(address coOwner);
    error SharesSumInvalid(uint256 sumBps);
    error InvalidAllowedUses(uint8 allowedUses);
    error InvalidValidity(uint64 validFrom, uint64 validUntil);
    error MissingSignature(address coOwner);
    error UnexpectedSigner(address signer);
    error InvalidSignature(address signer);
    error DatasetNotRegistered(bytes32 datasetId);
    error DatasetAlreadyRevoked(bytes32 datasetId);
    error NotCoOwner(bytes32 datasetId, address account);

    /// @param admin Receives DEFAULT_ADMIN_ROLE (grants and revokes the registrar).
    /// @param registrar Receives REGISTRAR_ROLE; address(0) to grant it later.
    constructor(address admin, address registrar) EIP712("usefirst", "1") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        if (registrar != address(0)) {
            _grantRole(REGISTRAR_ROLE, registrar);
        }
    }

    /// @notice Register a dataset, or re-register it with new terms.
    /// @dev `signatures` must be sorted by signer and cover exactly the union of the new co-owners
    /// and, on re-registration, the previous co-owners: a co-owner can be dropped only with their
    /// own signature. Each signature is a RightsConfirmation over `r` with the signer's current
    /// nonce, which it consumes. Re-registration clears a revocation.
    /// @param r The record to anchor.
    /// @param signatures One RightsConfirmation per required signer, ascending by signer.
    /// @return version The dataset's new version number (1 on first registration).
    function register(Registration calldata r, CoOwnerSignature[] calldata signatures)
        external
        onlyRole(REGISTRAR_ROLE)
        returns (uint32 version)
    {
        _validate(r);
        DatasetRecord storage d = _datasets[r.datasetId];
        _checkSignatures(r, d.coOwners, signatures);

        version = d.version + 1;
        d.contentRoot = r.contentRoot;
        d.termsHash = r.termsHash;
        d.allowedUses = r.allowedUses;
        d.validFrom = r.validFrom;
        d.validUntil = r.validUntil;
        d.version = version;
        d.registeredAt = uint64(block.timestamp);
        d.revokedAt = 0;
        d.revokedBy = address(0);
        d.coOwners = r.coOwners;
        d.sharesBps = r.sharesBps;

        emit DatasetRegistered(r.datasetId, version, r);
    }

    /// @notice Revoke a dataset's current registration with a co-owner's RightsRevocation signature.
    /// @dev Anyone may submit; the signature (EOA or ERC-1271) is the authority. Consumes the
    /// co-owner's nonce, so the revocation cannot be replayed and any confirmation the co-owner
    /// signed with the same nonce becomes unusable.
    /// @param datasetId The dataset to revoke.
    /// @param coOwner A current co-owner of the dataset.
    /// @param nonce The co-owner's current nonce (see {nonces}).
    /// @param signature The co-owner's RightsRevocation signature.
    function revoke(bytes32 datasetId, address coOwner, uint256 nonce, bytes calldata signature) external {
        DatasetRecord storage d = _datasets[datasetId];
        if (d.version == 0) revert DatasetNotRegistered(datasetId);
        if (d.revokedAt != 0) revert DatasetAlreadyRevoked(datasetId);
        if (!_isCoOwner(d.coOwners, coOwner)) revert NotCoOwner(datasetId, coOwner);
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(REVOCATION_TYPEHASH, datasetId, nonce)));
        if (!SignatureChecker.isValidSignatureNow(coOwner, digest, signature)) revert InvalidSignature(coOwner);
        _useCheckedNonce(coOwner, nonce);

        d.revokedAt = uint64(block.timestamp);
        d.revokedBy = coOwner;
        emit DatasetRevoked(datasetId, coOwner, d.version);
    }

    /// @notice Burn the caller's current nonce so a signature they made with it can never be used.
    /// @return nonce The nonce that was cancelled.
    function cancelNonce() external returns (uint256 nonce) {
        nonce = _useNonce(msg.sender);
        emit NonceCancelled(msg.sender, nonce);
    }

    /// @notice The anchored record of a dataset; `version` is 0 if it was never registered.
    /// @param datasetId The dataset id (ledger UUID as a left-padded 128-bit integer).
    function getDataset(bytes32 datasetId) external view returns (DatasetRecord memory) {
        return _datasets[datasetId];
    }

    /// @notice Whether the dataset's current registration was revoked (false if never registered).
    /// @param datasetId The dataset id.
    function isRevoked(bytes32 datasetId) external view returns (bool) {
        return _datasets[datasetId].revokedAt != 0;
    }

    /// @notice Whether the dataset is registered, not revoked and inside its validity window now.
    /// @param datasetId The dataset id.
    function isActive(bytes32 datasetId) external view returns (bool) {
        DatasetRecord storage d = _datasets[datasetId];
        return d.version != 0 && d.revokedAt == 0 && d.validFrom <= block.timestamp
            && (d.validUntil == 0 || block.timestamp < d.validUntil);
    }

    /// @notice The EIP-712 digest a signer with `nonce` signs to confirm `r` (for off-chain checks).
    /// @param r The registration.
    /// @param nonce The signer's nonce.
    function hashConfirmation(Registration calldata r, uint256 nonce) external view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encodePacked(_confirmationPrefix(r), nonce)));
    }

    /// @notice The EIP-712 digest a co-owner with `nonce` signs to revoke `datasetId`.
    /// @param datasetId The dataset id.
    /// @param nonce The co-owner's nonce.
    function hashRevocation(bytes32 datasetId, uint256 nonce) external view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(REVOCATION_TYPEHASH, datasetId, nonce)));
    }

    /// @notice This contract's EIP-712 domain separator.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function _validate(Registration calldata r) private pure {
        if (r.datasetId == bytes32(0)) revert InvalidDatasetId();
        uint256 n = r.coOwners.length;
        if (n == 0 || n > MAX_CO_OWNERS) revert InvalidCoOwnerCount(n, MAX_CO_OWNERS);
        if (r.sharesBps.length != n) revert LengthMismatch(n, r.sharesBps.length);
        if (r.allowedUses == 0 || r.allowedUses & ~ALLOWED_USES_MASK != 0) revert InvalidAllowedUses(r.allowedUses);
        if (r.validUntil != 0 && r.validUntil <= r.validFrom) revert InvalidValidity(r.validFrom, r.validUntil);
        uint256 sum;
        address previous;
        for (uint256 i = 0; i < n; ++i) {
            address owner = r.coOwners[i];
            // Strictly ascending also rules out duplicates and the zero address.
            if (owner <= previous) revert CoOwnersNotSorted(i);
            if (r.sharesBps[i] == 0) revert ZeroShare(owner);
            sum += r.sharesBps[i];
            previous = owner;
        }
        if (sum != TOTAL_SHARES_BPS) revert SharesSumInvalid(sum);
    }

    /// @dev Walks the signers and the sorted union of new and previous co-owners in step.
    function _checkSignatures(
        Registration calldata r,
        address[] storage previousOwners,
        CoOwnerSignature[] calldata signatures
    ) private {
        address[] memory previous = previousOwners;
        bytes memory prefix = _confirmationPrefix(r);
        uint256 i; // next new co-owner
        uint256 j; // next previous co-owner
        uint256 n = r.coOwners.length;
        uint256 m = previous.length;
        for (uint256 k = 0; k < signatures.length; ++k) {
            address signer = signatures[k].signer;
            if (i == n && j == m) revert UnexpectedSigner(signer);
            address expected;
            if (j == m || (i < n && r.coOwners[i] <= previous[j])) expected = r.coOwners[i];
            else expected = previous[j];
            if (signer != expected) {
                if (signer > expected) revert MissingSignature(expected);
                revert UnexpectedSigner(signer);
            }
            if (i < n && r.coOwners[i] == expected) ++i;
            if (j < m && previous[j] == expected) ++j;

            uint256 nonce = signatures[k].nonce;
            bytes32 digest = _hashTypedDataV4(keccak256(abi.encodePacked(prefix, nonce)));
            if (!SignatureChecker.isValidSignatureNow(signer, digest, signatures[k].signature)) {
                revert InvalidSignature(signer);
            }
            _useCheckedNonce(signer, nonce);
        }
        if (i < n) revert MissingSignature(r.coOwners[i]);
        if (j < m) revert MissingSignature(previous[j]);
    }

    /// @dev The struct-hash preimage of a RightsConfirmation without its trailing nonce word; the
    /// same for every signer, so it is encoded once.
    function _confirmationPrefix(Registration calldata r) private pure returns (bytes memory) {
        // EIP-712 encodes arrays as the hash of their elements, each padded to 32 bytes, which is
        // what abi.encodePacked does for arrays.
        return abi.encode(
            CONFIRMATION_TYPEHASH,
            r.datasetId,
            r.contentRoot,
            r.termsHash,
            r.allowedUses,
            keccak256(abi.encodePacked(r.coOwners)),
            keccak256(abi.encodePacked(r.sharesBps)),
            r.validFrom,
            r.validUntil
        );
    }

    function _isCoOwner(address[] storage owners, address account) private view returns (bool) {
        uint256 n = owners.length;
        for (uint256 i = 0; i < n; ++i) {
            if (owners[i] == account) return true;
        }
        return false;
    }
}
