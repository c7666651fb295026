using System.Security.Cryptography;

namespace Shepherd.Engine.Batches;

/// <summary>Makes ids: a prefix and 24 random hex digits, like the providers' own.</summary>
public static class BatchIds
{
    /// <summary>A new batch id, <c>batch_</c> and 24 hex digits.</summary>
    public static string NewBatchId() => New("batch_");

    /// <summary>A new id: <paramref name="prefix"/> and 24 random hex digits.</summary>
    public static string New(string prefix) => prefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));

    /// <summary>The id of an item's result line: stable, so a re-export writes the same line.</summary>
    public static string RequestId(string batchId, long line)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        var suffix = batchId.StartsWith("batch_", StringComparison.Ordinal) ? batchId[6..] : batchId;
        return $"batch_req_{suffix}{line:x8}";
    }
}
