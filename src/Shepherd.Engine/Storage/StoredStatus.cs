using System.Collections.Frozen;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

/// <summary>
/// How the stores keep a batch's status: as the word the OpenAI batch API gives it
/// (<c>in_progress</c>), so a row reads plainly. SQL takes the quoted words from here, made once
/// from <see cref="BatchStatus"/> (<see cref="InProgress"/> is <c>'in_progress'</c>); a row's word
/// is read back by <see cref="Parse"/>.
/// </summary>
internal static class StoredStatus
{
    private static readonly FrozenDictionary<string, BatchStatus> ByWord = Enum.GetValues<BatchStatus>().ToFrozenDictionary(Word, StringComparer.Ordinal);

    /// <summary><see cref="BatchStatus.Validating"/>, quoted for SQL.</summary>
    internal static readonly string Validating = Quoted(BatchStatus.Validating);

    /// <summary><see cref="BatchStatus.InProgress"/>, quoted for SQL.</summary>
    internal static readonly string InProgress = Quoted(BatchStatus.InProgress);

    /// <summary><see cref="BatchStatus.Finalizing"/>, quoted for SQL.</summary>
    internal static readonly string Finalizing = Quoted(BatchStatus.Finalizing);

    /// <summary><see cref="BatchStatus.Completed"/>, quoted for SQL.</summary>
    internal static readonly string Completed = Quoted(BatchStatus.Completed);

    /// <summary><see cref="BatchStatus.Failed"/>, quoted for SQL.</summary>
    internal static readonly string Failed = Quoted(BatchStatus.Failed);

    /// <summary><see cref="BatchStatus.Cancelling"/>, quoted for SQL.</summary>
    internal static readonly string Cancelling = Quoted(BatchStatus.Cancelling);

    /// <summary><see cref="BatchStatus.Cancelled"/>, quoted for SQL.</summary>
    internal static readonly string Cancelled = Quoted(BatchStatus.Cancelled);

    /// <summary><see cref="BatchStatus.Expired"/>, quoted for SQL.</summary>
    internal static readonly string Expired = Quoted(BatchStatus.Expired);

    /// <summary>The word a status is stored as: the one every output uses.</summary>
    internal static string Word(BatchStatus status) => BatchStatusWords.Of(status);

    /// <summary>The status a stored word stands for.</summary>
    internal static BatchStatus Parse(string word) =>
        ByWord.TryGetValue(word, out var status) ? status : throw new StoreException($"Unknown batch status '{word}' in the state file.");

    private static string Quoted(BatchStatus status) => $"'{Word(status)}'";
}
