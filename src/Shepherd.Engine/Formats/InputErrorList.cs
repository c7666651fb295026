namespace Shepherd.Engine.Formats;

/// <summary>
/// The problems of an input, as a reader finds them: the first <c>max</c> (by line) are kept to
/// be listed, the rest only counted, so a file with a million bad lines is still read to its end
/// in flat memory and the user learns how many there were.
/// </summary>
public sealed class InputErrorList
{
    private readonly int _max;
    private readonly List<InputError> _listed = [];
    private long _unlisted;

    /// <summary>Keeps at most <paramref name="max"/> problems to list.</summary>
    public InputErrorList(int max)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(max, 1);
        _max = max;
    }

    /// <summary>True once as many problems are kept as will be listed: later ones are only counted.</summary>
    public bool Full => _listed.Count >= _max;

    /// <summary>True when no problem was found.</summary>
    public bool IsEmpty => _listed.Count == 0 && _unlisted == 0;

    /// <summary>Keeps <paramref name="error"/> to be listed, or counts it when the list is full.</summary>
    public void Add(InputError error)
    {
        if (Full)
        {
            _unlisted++;
        }
        else
        {
            _listed.Add(error);
        }
    }

    /// <summary>The problems to list, in line order (those of the whole input first), and how many more there were.</summary>
    public (IReadOnlyList<InputError> Listed, long Unlisted) Finish()
    {
        _listed.Sort((a, b) => (a.Line ?? 0).CompareTo(b.Line ?? 0));
        return (_listed, _unlisted);
    }
}
